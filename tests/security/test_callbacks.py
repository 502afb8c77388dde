"""sender_uri allow-listing and refusal of internal addresses (SSRF)."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from dcihub.security.callbacks import (
    check_callback_target,
    check_sender_uri,
    ip_refusal_reason,
    resolve_and_check,
)
from dcihub.security.errors import SenderUriError
from dcihub.security.partners import Partner

PREFIXES = [
    "https://spmis.example.org/dci/",
    "https://cb.example.net:8443/hooks",
    "http://legacy.example.org/",
]


def P(callback_prefixes: list[str] | None = None) -> Partner:
    prefixes = PREFIXES if callback_prefixes is None else callback_prefixes
    return Partner("spmis.example.org", callback_prefixes=list(prefixes))


@pytest.mark.parametrize(
    "uri",
    [
        "https://spmis.example.org/dci/",
        "https://spmis.example.org/dci/registry/on-search",
        "https://SPMIS.example.org/dci/on-search?x=1",
        "https://spmis.example.org:443/dci/on-search",
        "https://spmis.example.org./dci/on-search",
        "https://cb.example.net:8443/hooks",
        "https://cb.example.net:8443/hooks/on-search",
        "http://legacy.example.org/anything",
    ],
)
def test_accepted(uri: str) -> None:
    check_sender_uri(uri, P())


@pytest.mark.parametrize(
    "uri,match",
    [
        ("https://evil.example.org/dci/on-search", "not under"),
        ("https://spmis.example.org.evil.com/dci/x", "not under"),
        ("https://spmis.example.org/dcix/on-search", "not under"),
        ("https://spmis.example.org/other", "not under"),
        ("https://spmis.example.org:8443/dci/on-search", "not under"),  # different port
        ("https://cb.example.net/hooks/x", "not under"),  # default 443 != 8443
        ("http://spmis.example.org/dci/on-search", "not under"),  # scheme downgrade
        ("https://user:pw@spmis.example.org/dci/x", "user information"),
        ("https://spmis.example.org@evil.com/dci/x", "user information"),
        ("https://spmis.example.org/dci/../admin", "dot segments"),
        ("https://spmis.example.org/dci/%2e%2e/admin", "dot segments"),
        ("https://spmis.example.org/dci/..%2fadmin", "dot segments"),
        ("https://spmis.example.org/dci\\..\\admin", "dot segments"),
        ("https://spmis.example.org/dci/x#frag", "fragment"),
        ("ftp://spmis.example.org/dci/x", "https"),
        ("javascript:alert(1)", "https"),
        ("https:///dci/x", "no host"),
        ("https://spmis.example.org/dci/ x", "spaces or control"),
        (" https://spmis.example.org/dci/x", "spaces or control"),
        ("https://spmis.example.org:99999/dci/x", "not a valid URL"),
        ("", "spaces or control"),
    ],
)
def test_refused(uri: str, match: str) -> None:
    with pytest.raises(SenderUriError, match=match) as err:
        check_sender_uri(uri, P())
    assert err.value.code == "err.sender_uri.invalid"


def test_refusal_names_the_registered_prefixes() -> None:
    with pytest.raises(SenderUriError, match="registered: https://spmis.example.org/dci/"):
        check_sender_uri("https://x.example/", P())
    with pytest.raises(SenderUriError, match="registered: none"):
        check_sender_uri("https://x.example/", P(callback_prefixes=[]))


@pytest.mark.parametrize(
    "ip",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "100.64.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "2002:0a00:0001::1",  # 6to4 of 10.0.0.1
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "fec0::1",
    ],
)
def test_internal_addresses_are_refused(ip: str) -> None:
    assert ip_refusal_reason(ipaddress.ip_address(ip)) is not None
    with pytest.raises(SenderUriError, match="internal networks"):
        resolve_and_check(ip)
    assert resolve_and_check(ip, allow_private=True) == [str(ipaddress.ip_address(ip))]


@pytest.mark.parametrize("ip", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(ip: str) -> None:
    assert ip_refusal_reason(ipaddress.ip_address(ip)) is None
    assert resolve_and_check(f"[{ip}]") == [str(ipaddress.ip_address(ip))]


def fake_dns(*addresses: str):
    def resolver(host, port, **kw):
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    return resolver


def test_a_single_internal_answer_among_public_ones_is_refused() -> None:
    with pytest.raises(SenderUriError, match="10.0.0.7"):
        resolve_and_check("cb.example", resolver=fake_dns("8.8.8.8", "10.0.0.7"))
    assert resolve_and_check("cb.example", resolver=fake_dns("8.8.8.8", "8.8.8.8")) == ["8.8.8.8"]


def test_resolution_failure_is_reported() -> None:
    def failing(host, port, **kw):
        raise socket.gaierror(-2, "Name or service not known")

    with pytest.raises(SenderUriError, match="could not be resolved"):
        resolve_and_check("nowhere.invalid", resolver=failing)
    with pytest.raises(SenderUriError, match="no addresses"):
        resolve_and_check("empty.example", resolver=fake_dns())


def test_localhost_name_is_refused_via_real_resolver() -> None:
    with pytest.raises(SenderUriError, match="loopback"):
        resolve_and_check("localhost")


def test_check_callback_target_combines_both() -> None:
    partner = P(callback_prefixes=["https://cb.example/dci/"])
    assert check_callback_target(
        "https://cb.example/dci/on-search", partner, resolver=fake_dns("8.8.4.4")
    ) == ["8.8.4.4"]
    with pytest.raises(SenderUriError, match="private"):
        check_callback_target(
            "https://cb.example/dci/on-search", partner, resolver=fake_dns("192.168.0.9")
        )
    partner.allow_private_callbacks = True
    assert check_callback_target(
        "https://cb.example/dci/on-search", partner, resolver=fake_dns("192.168.0.9")
    ) == ["192.168.0.9"]
    with pytest.raises(SenderUriError, match="not under"):
        check_callback_target("https://cb.example/other", partner, resolver=fake_dns("8.8.4.4"))
