"""Where we may send callbacks: `sender_uri` allow-listing and address checks (SSRF defence).

`check_sender_uri` accepts a callback URL only if it lies under one of the partner's registered
`callback_prefixes`, compared as parsed URLs: same scheme, same host, same port (default ports
made explicit; a prefix written `host:*` accepts any port of that host), and a path that equals the prefix path or continues it at a `/` boundary; no
userinfo, no fragment, no dot segments or encoded dots/slashes that could climb out of the
prefix. `resolve_and_check` resolves a host and refuses loopback, private, link-local,
multicast, unspecified, reserved and other non-global addresses (also when hidden in IPv4-mapped
or 6to4 IPv6 addresses) unless the partner is configured with `allow_private_callbacks`.
The outbound sender should connect to the returned addresses (not resolve again) so that a DNS
answer cannot change between the check and the connection.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, unquote, urlsplit

from .errors import SenderUriError

if TYPE_CHECKING:
    from .partners import Partner

__all__ = ["check_sender_uri", "check_callback_target", "resolve_and_check", "ip_refusal_reason"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_BAD_PATH = re.compile(r"%2f|%5c|%2e|\\", re.IGNORECASE)


def _parse(uri: str, what: str) -> tuple[SplitResult, str, int, str]:
    if (
        not isinstance(uri, str)
        or not uri
        or uri != uri.strip()
        or any(ord(c) < 0x21 or ord(c) == 0x7F for c in uri)
    ):
        raise SenderUriError(f"{what} {uri!r} contains spaces or control characters")
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise SenderUriError(f"{what} {uri!r} is not a valid URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise SenderUriError(f"{what} {uri!r} must be an https (or http) URL")
    if not parts.hostname:
        raise SenderUriError(f"{what} {uri!r} has no host")
    if "@" in parts.netloc:
        raise SenderUriError(f"{what} {uri!r} must not contain user information (user@host)")
    return parts, parts.hostname.lower().rstrip("."), port or _DEFAULT_PORTS[scheme], scheme


def _path_segments_ok(path: str) -> bool:
    if _BAD_PATH.search(path):
        return False
    return all(seg not in (".", "..") for seg in unquote(path).split("/"))


def check_sender_uri(uri: str, partner: Partner) -> None:
    """Raise SenderUriError (`err.sender_uri.invalid`) unless `uri` is under a registered prefix."""
    parts, host, port, scheme = _parse(uri, "sender_uri")
    if parts.fragment:
        raise SenderUriError(f"sender_uri {uri!r} must not have a #fragment")
    if not _path_segments_ok(parts.path):
        raise SenderUriError(
            f"sender_uri {uri!r} has dot segments or encoded slashes/dots in its path"
        )
    for prefix in partner.callback_prefixes:
        any_port = False
        if isinstance(prefix, str) and ":*" in urlsplit(prefix).netloc:
            # "http://127.0.0.1:*/..." — any port of that host (for local development partners)
            prefix = prefix.replace(":*", "", 1)
            any_port = True
        try:
            p_parts, p_host, p_port, p_scheme = _parse(prefix, "callback prefix")
        except SenderUriError:
            continue  # a broken prefix in configuration never matches
        if (scheme, host) != (p_scheme, p_host) or (port != p_port and not any_port):
            continue
        p_path = p_parts.path or "/"
        path = parts.path or "/"
        if path == p_path.rstrip("/") or path.startswith(p_path.rstrip("/") + "/"):
            return
    registered = ", ".join(partner.callback_prefixes) or "none"
    raise SenderUriError(
        f"sender_uri {uri!r} is not under a callback URL registered for {partner.sender_id!r} "
        f"(registered: {registered}); ask the registry operator to add it"
    )


def ip_refusal_reason(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why a callback must not go to `ip`, or None if it is a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip_refusal_reason(ip.ipv4_mapped)
        if ip.sixtofour is not None and ip_refusal_reason(ip.sixtofour):
            return "a 6to4 address embedding a non-public IPv4 address"
        if ip in ipaddress.ip_network("64:ff9b::/96"):
            return ip_refusal_reason(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    checks = [
        ("is_unspecified", "an unspecified address"),
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_private", "a private address"),
        ("is_reserved", "a reserved address"),
    ]
    for attr, reason in checks:
        if getattr(ip, attr):
            return reason
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "a site-local address"
    if not ip.is_global:
        return "a non-global address"
    return None


Resolver = Callable[..., list[tuple[Any, ...]]]


def _addresses(
    host: str, port: int, resolver: Resolver
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = resolver(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise SenderUriError(f"callback host {host!r} could not be resolved: {exc}") from exc
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for info in infos:
        addr = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if addr not in addresses:
            addresses.append(addr)
    if not addresses:
        raise SenderUriError(f"callback host {host!r} has no addresses")
    return addresses


def resolve_and_check(
    host: str,
    allow_private: bool = False,
    *,
    port: int = 443,
    resolver: Resolver = socket.getaddrinfo,
) -> list[str]:
    """Resolve `host` and return its addresses, or raise SenderUriError if any is refused.

    All resolved addresses must pass (an attacker's DNS could otherwise mix in an internal one).
    """
    host = host.strip("[]").rstrip(".")
    addresses = _addresses(host, port, resolver)
    if not allow_private:
        for addr in addresses:
            reason = ip_refusal_reason(addr)
            if reason:
                raise SenderUriError(
                    f"callback host {host!r} resolves to {addr}, {reason}; callbacks to "
                    "internal networks are refused (the operator can allow them per partner "
                    "with allow_private_callbacks)"
                )
    return [str(a) for a in addresses]


def check_callback_target(
    uri: str, partner: Partner, *, resolver: Resolver = socket.getaddrinfo
) -> list[str]:
    """Both checks for an outbound callback: prefix allow-list, then the resolved addresses.

    Returns the addresses to connect to.
    """
    check_sender_uri(uri, partner)
    _, host, port, _ = _parse(uri, "sender_uri")
    return resolve_and_check(host, partner.allow_private_callbacks, port=port, resolver=resolver)
