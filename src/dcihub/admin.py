"""Operator tasks behind `dcihub partners …`, `dcihub keys …` and `dcihub audit …`.

Everything here works on the files and the store named by a node's configuration (the same YAML
`dcihub serve` reads) and returns plain data; `cli.py` only parses options and prints. A mistake
the operator can fix (bad option value, missing file, unknown partner) raises `AdminError` with a
one-line message.

Running nodes and workers re-read the partner file and the key directory within seconds of a
change (`server/reload.py`); `PARTNERS_NOTE` and `KEYS_NOTE` tell the operator so.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from sqlalchemy import inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from .config import ConfigError, Settings, load_settings
from .security.errors import KeyStoreError, PartnerConfigError
from .security.keys import KeyInfo, KeyManager, _atomic_write, generate_key, load_jwk
from .security.partners import Partner, PartnerRegistry
from .security.signatures import HTTP_SIG, PROFILES
from .security.tokens import generate_secret
from .standard.profiles import PROFILES as REGISTRIES
from .store import Store
from .store.audit import AuditRow, Problem

__all__ = [
    "AdminError",
    "load_config",
    "PartnerChanges",
    "PartnerResult",
    "CLEARABLE",
    "partners_file",
    "load_partners",
    "add_partner",
    "update_partner",
    "remove_partner",
    "reset_secret",
    "partner_row",
    "partner_details",
    "Rotation",
    "key_dir",
    "list_keys",
    "rotate_keys",
    "public_jwks",
    "KEYS_NOTE",
    "PARTNERS_NOTE",
    "open_store",
    "verify_audit",
    "parse_since",
    "audit_trail",
    "audit_summary",
]


class AdminError(Exception):
    """A usage or configuration error (the CLI exits with status 2)."""


def load_config(path: Path) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as exc:
        raise AdminError(str(exc)) from None


# =============================================================================================
# partners

PARTNERS_NOTE = (
    "running nodes and workers re-read the partner file within a few seconds; no restart is needed"
)

# `partners update --clear NAME`: settings that can be reset to their default.
CLEARABLE = {
    "name": ("name",),
    "scopes": ("scopes",),
    "callback-prefixes": ("callback_prefixes",),
    "callback-base": ("callback_base",),
    "jwks": ("jwks",),
    "jwks-url": ("jwks_url",),
    "fields": ("fields",),
    "consent-purposes": ("consent_purposes",),
    "callback-auth": ("token_url", "callback_client_id", "callback_client_secret"),
    "rate-limits": ("requests_per_second", "requests_per_day"),
}

_ACTION = re.compile(r"^(\*|[a-z][a-z0-9_-]*)$")
_FIELD_PATH = re.compile(r"^[A-Za-z0-9_@$-]+(\.[A-Za-z0-9_@$-]+)*$")
_TOKEN = re.compile(r"^[^\s]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class PartnerChanges:
    """Options of `partners add` / `partners update`; None = not given (keep / default)."""

    name: str | None = None
    client_id: str | None = None
    scopes: list[str] | None = None  # "registry:action[,action]" or "registry:*"
    callback_prefixes: list[str] | None = None
    callback_base: str | None = None
    jwks_url: str | None = None
    jwks_file: Path | None = None
    generate_keys: Path | None = None
    fields: list[str] | None = None  # "registry:path,path"
    signature_profile: str | None = None
    require_signature: bool | None = None
    require_encryption: bool | None = None
    encrypt_replies: bool | None = None
    consent_purposes: list[str] | None = None
    allow_private_callbacks: bool | None = None
    signature_verified_by_gateway: bool | None = None
    requests_per_second: float | None = None
    requests_per_day: int | None = None
    token_url: str | None = None
    callback_client_id: str | None = None
    callback_client_secret: str | None = None
    clear: list[str] = field(default_factory=list)


@dataclass
class PartnerResult:
    partner: Partner
    path: Path  # the partner file
    client_secret: str | None = None  # a new secret, to show once
    key_file: Path | None = None  # where the partner's new private keys were written
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def partners_file(settings: Settings) -> Path:
    return settings.security.path(settings.security.partners_file)


def load_partners(settings: Settings) -> PartnerRegistry:
    """The partner registry of this configuration (empty if the file does not exist yet)."""
    path = partners_file(settings)
    if not path.exists():
        return PartnerRegistry()
    try:
        return PartnerRegistry.load(path)
    except PartnerConfigError as exc:
        raise AdminError(str(exc)) from None


def _save(registry: PartnerRegistry, path: Path) -> None:
    if not path.parent.is_dir():
        raise AdminError(f"cannot write the partner file {path}: {path.parent} does not exist")
    try:
        registry.save(path)
    except OSError as exc:
        raise AdminError(f"cannot write the partner file {path}: {exc.strerror}") from None


def _require(registry: PartnerRegistry, sender_id: str, path: Path) -> Partner:
    partner = registry.get(sender_id)
    if partner is None:
        known = ", ".join(p.sender_id for p in registry) or "none"
        raise AdminError(f"no partner with sender_id {sender_id!r} in {path} (known: {known})")
    return partner


def add_partner(settings: Settings, sender_id: str, changes: PartnerChanges) -> PartnerResult:
    """Register a new partner with a fresh client secret (returned once, stored hashed)."""
    sender_id = _check_token(sender_id, "sender_id")
    if not changes.client_id:
        raise AdminError("give the partner's OAuth client id with --client-id")
    if changes.clear:
        raise AdminError("--clear is for `partners update`")
    path = partners_file(settings)
    registry = load_partners(settings)
    if registry.get(sender_id) is not None:
        raise AdminError(
            f"sender_id {sender_id!r} is already registered in {path}; change it "
            f"with `dcihub partners update {sender_id}`"
        )
    base = Partner(sender_id=sender_id)
    partner, private_jwks, warnings = _apply(settings, base, changes)
    secret = generate_secret()
    try:
        registry.add(partner, client_secret=secret)
    except PartnerConfigError as exc:
        raise AdminError(f"{exc} (in {path})") from None
    key_file = _write_private_keys(changes.generate_keys, private_jwks, registry, path)
    result = PartnerResult(partner, path, secret, key_file, warnings)
    result.notes.extend(filter(None, [_ensure_http_sig_key(settings, partner)]))
    return result


def update_partner(settings: Settings, sender_id: str, changes: PartnerChanges) -> PartnerResult:
    """Change the given settings of a partner; everything not given stays as it is."""
    path = partners_file(settings)
    registry = load_partners(settings)
    current = _require(registry, sender_id, path)
    cleared = replace(current)
    for name in changes.clear:
        if name not in CLEARABLE:
            raise AdminError(f"--clear {name}: not one of {', '.join(CLEARABLE)}")
        defaults = {f.name: f for f in fields(Partner)}
        for attr in CLEARABLE[name]:
            spec = defaults[attr]
            default = spec.default_factory() if callable(spec.default_factory) else spec.default
            setattr(cleared, attr, default)
    partner, private_jwks, warnings = _apply(settings, cleared, changes)
    try:
        updated = PartnerRegistry(partner if p.sender_id == sender_id else p for p in registry)
    except PartnerConfigError as exc:
        raise AdminError(f"{exc} (in {path})") from None
    key_file = _write_private_keys(changes.generate_keys, private_jwks, updated, path)
    result = PartnerResult(partner, path, None, key_file, warnings)
    result.notes.extend(filter(None, [_ensure_http_sig_key(settings, partner)]))
    if changes.fields is not None or "fields" in changes.clear:
        result.notes.extend(held_subscriptions(settings, partner))
    return result


def held_subscriptions(settings: Settings, partner: Partner) -> list[str]:
    """Notes naming the partner's subscriptions whose filter its fields no longer allow: their
    notifications will be held back (docs/subscriptions.md, "Narrowed query fields")."""
    from .standard.fields import FieldAccess
    from .store.subscriptions import held_back

    try:
        store = open_store(settings)
    except AdminError:
        return []  # no store yet: no subscriptions
    notes = []
    try:
        with store.read() as conn:
            subs = [s for s in store.subscriptions.rows(conn) if s.sender_id == partner.sender_id]
        today = datetime.now(UTC).date()
        limits = settings.limits.search_limits()
        for sub in subs:
            profile = store.profiles.get(sub.registry)
            paths = partner.queryable_fields(sub.registry)
            if profile is None or paths is None:
                continue
            access = FieldAccess(profile, tuple(paths), "query_fields (by default its fields)")
            reason = held_back(profile, sub, access, today, limits)
            if reason is not None:
                notes.append(
                    f"subscription {sub.code} ({sub.registry} {sub.event_type}) uses a field "
                    f"the partner may no longer query; its notifications will be held back "
                    f"until the field is allowed again: {reason}"
                )
    except SQLAlchemyError as exc:
        notes.append(f"could not check the partner's subscriptions: {_first_line(exc)}")
    finally:
        store.dispose()
    return notes


def remove_partner(settings: Settings, sender_id: str) -> Path:
    path = partners_file(settings)
    registry = load_partners(settings)
    _require(registry, sender_id, path)
    registry.remove(sender_id)
    _save(registry, path)
    return path


def reset_secret(settings: Settings, sender_id: str) -> PartnerResult:
    """A new client secret for a partner (the old one stops working)."""
    path = partners_file(settings)
    registry = load_partners(settings)
    partner = _require(registry, sender_id, path)
    if not partner.client_id:
        raise AdminError(
            f"partner {sender_id!r} has no client_id; give it one with "
            f"`dcihub partners update {sender_id} --client-id ID`"
        )
    secret = generate_secret()
    registry.remove(sender_id)
    registry.add(partner, client_secret=secret)
    _save(registry, path)
    return PartnerResult(partner, path, secret)


def _write_private_keys(
    target: Path | None, private_jwks: dict[str, Any] | None, registry: PartnerRegistry, path: Path
) -> Path | None:
    """Write the partner's private keys (if generated), then the partner file."""
    if target is None or private_jwks is None:
        _save(registry, path)
        return None
    data = (json.dumps(private_jwks, indent=2) + "\n").encode("utf-8")
    try:
        _atomic_write(target, data)
    except OSError as exc:
        raise AdminError(f"cannot write the private keys to {target}: {exc.strerror}") from None
    try:
        _save(registry, path)
    except AdminError:
        target.unlink(missing_ok=True)
        raise
    return target.resolve()


def _apply(
    settings: Settings, partner: Partner, changes: PartnerChanges
) -> tuple[Partner, dict[str, Any] | None, list[str]]:
    """`partner` with `changes` applied and validated; the private JWKS if keys were made."""
    values: dict[str, Any] = {}
    warnings: list[str] = []
    if changes.name is not None:
        values["name"] = changes.name.strip()
    if changes.client_id is not None:
        values["client_id"] = _check_token(changes.client_id, "--client-id")
    if changes.scopes is not None:
        values["scopes"] = _parse_scopes(changes.scopes, settings, warnings)
    if changes.callback_prefixes is not None:
        values["callback_prefixes"] = [
            _check_url(u, "--callback-prefix", any_port=True) for u in changes.callback_prefixes
        ]
    if changes.callback_base is not None:
        values["callback_base"] = _check_url(changes.callback_base, "--callback-base")
    key_sources = [
        o
        for o, v in (
            ("--jwks-url", changes.jwks_url),
            ("--jwks-file", changes.jwks_file),
            ("--generate-keys", changes.generate_keys),
        )
        if v is not None
    ]
    if len(key_sources) > 1:
        raise AdminError(f"give only one of {', '.join(key_sources)}")
    private_jwks: dict[str, Any] | None = None
    if changes.jwks_url is not None:
        values["jwks_url"] = _check_url(changes.jwks_url, "--jwks-url")
    if changes.jwks_file is not None:
        values["jwks"] = _read_public_jwks(changes.jwks_file)
    if changes.generate_keys is not None:
        target = changes.generate_keys
        if target.exists():
            raise AdminError(
                f"--generate-keys {target}: the file exists; choose a new path "
                "(private keys are never overwritten)"
            )
        if not target.parent.is_dir():
            raise AdminError(f"--generate-keys {target}: directory {target.parent} does not exist")
        profile = changes.signature_profile or partner.signature_profile
        values["jwks"], private_jwks = _new_key_pair("EdDSA" if profile == HTTP_SIG else "ES256")
    if changes.fields is not None:
        values["fields"] = _parse_fields(changes.fields)
    if changes.signature_profile is not None:
        if changes.signature_profile not in PROFILES:
            raise AdminError(
                f"--signature-profile {changes.signature_profile!r}: not one of "
                f"{', '.join(PROFILES)}"
            )
        values["signature_profile"] = changes.signature_profile
    if changes.require_signature is not None:
        values["require_signature"] = changes.require_signature
        if changes.require_signature:
            values["allow_unsigned"] = False
    for name in (
        "require_encryption",
        "encrypt_replies",
        "allow_private_callbacks",
        "signature_verified_by_gateway",
    ):
        if getattr(changes, name) is not None:
            values[name] = getattr(changes, name)
    if changes.requests_per_second is not None:
        if not changes.requests_per_second > 0:
            raise AdminError("--requests-per-second must be a positive number")
        values["requests_per_second"] = changes.requests_per_second
    if changes.requests_per_day is not None:
        if changes.requests_per_day < 1:
            raise AdminError("--requests-per-day must be a positive whole number")
        values["requests_per_day"] = changes.requests_per_day
    if changes.consent_purposes is not None:
        values["consent_purposes"] = [
            _check_token(c, "--consent-purpose") for c in changes.consent_purposes
        ]
    if changes.token_url is not None:
        values["token_url"] = _check_url(changes.token_url, "--token-url")
    if changes.callback_client_id is not None:
        values["callback_client_id"] = _check_token(
            changes.callback_client_id, "--callback-client-id"
        )
    if changes.callback_client_secret is not None:
        values["callback_client_secret"] = _check_env_ref(changes.callback_client_secret)
    try:
        updated = replace(partner, **values)
    except PartnerConfigError as exc:
        raise AdminError(str(exc)) from None
    _check_callback_auth(updated)
    warnings.extend(_advice(settings, updated))
    return updated, private_jwks, warnings


def _check_token(value: str, what: str) -> str:
    value = value.strip()
    if not value or not _TOKEN.match(value):
        raise AdminError(f"{what} {value!r} must be non-empty and without spaces")
    return value


def _check_url(value: str, what: str, any_port: bool = False) -> str:
    """An absolute http(s) URL with a host, without user information or fragment."""
    text = value.strip()
    probe = text.replace(":*", "", 1) if any_port else text
    try:
        parts = urlsplit(probe)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise AdminError(f"{what} {value!r} is not a valid URL: {exc}") from None
    if not text or any(c.isspace() for c in text):
        raise AdminError(f"{what} {value!r} is not a valid URL: it contains spaces")
    if parts.scheme.lower() not in ("http", "https"):
        raise AdminError(
            f"{what} {value!r} is not a valid URL: it must start with https:// (or http://)"
        )
    if not parts.hostname:
        raise AdminError(f"{what} {value!r} is not a valid URL: it has no host")
    if "@" in parts.netloc:
        raise AdminError(f"{what} {value!r} must not contain user information (user@host)")
    if parts.fragment:
        raise AdminError(f"{what} {value!r} must not have a #fragment")
    return text


def _check_env_ref(value: str) -> str:
    name = value[4:] if value.startswith("env:") else None
    if not name or not _ENV_NAME.match(name):
        raise AdminError(
            "--callback-client-secret must be env:NAME (the secret is read from "
            "environment variable NAME on the node, so that it is neither stored "
            "in the partner file nor left in the shell history)"
        )
    return value


def _check_callback_auth(partner: Partner) -> None:
    given = {
        "--token-url": partner.token_url,
        "--callback-client-id": partner.callback_client_id,
        "--callback-client-secret": partner.callback_client_secret,
    }
    if any(given.values()) and not all(given.values()):
        missing = ", ".join(k for k, v in given.items() if not v)
        raise AdminError(
            f"to get tokens from the partner for callbacks, give --token-url, "
            f"--callback-client-id and --callback-client-secret together "
            f"(missing: {missing})"
        )


def _registry_name(registry: str, option: str, value: str) -> str:
    if registry != "*" and registry not in REGISTRIES:
        raise AdminError(
            f"{option} {value!r}: unknown registry {registry!r}; known: "
            f"{', '.join(REGISTRIES)} (or * for every registry)"
        )
    return registry


def _parse_scopes(
    values: list[str], settings: Settings, warnings: list[str]
) -> dict[str, list[str] | str]:
    scopes: dict[str, list[str] | str] = {}
    for value in values:
        registry, sep, actions = value.strip().partition(":")
        if not sep or not registry or not actions:
            raise AdminError(
                f"--scope {value!r}: expected registry:action (e.g. crvs:search, "
                "crvs:search,subscribe or crvs:*)"
            )
        _registry_name(registry, "--scope", value)
        names = []
        for action in actions.split(","):
            action = action.strip().removeprefix("registry.")
            if not _ACTION.match(action):
                raise AdminError(
                    f"--scope {value!r}: {action!r} is not an action name "
                    "(e.g. search, subscribe, txn-status, or *)"
                )
            names.append(action)
        if registry != "*" and registry not in settings.registries:
            warnings.append(
                f"--scope {value}: this node does not serve registry {registry!r} "
                f"(registries: {', '.join(settings.registries)})"
            )
        previous = scopes.get(registry, [])
        if "*" in names or previous == "*":
            scopes[registry] = "*"
        else:
            assert isinstance(previous, list)
            scopes[registry] = previous + [n for n in names if n not in previous]
    return scopes


def _parse_fields(values: list[str]) -> dict[str, list[str] | None]:
    result: dict[str, list[str] | None] = {}
    for value in values:
        registry, sep, paths = value.strip().partition(":")
        if not sep or not registry or not paths:
            raise AdminError(
                f"--fields {value!r}: expected registry:path,path (e.g. "
                "crvs:identifier,name.given_name,birth_date)"
            )
        _registry_name(registry, "--fields", value)
        items = [p.strip() for p in paths.split(",") if p.strip()]
        for item in items:
            if not _FIELD_PATH.match(item):
                raise AdminError(f"--fields {value!r}: {item!r} is not a dotted field path")
        existing = result.get(registry) or []
        result[registry] = existing + [p for p in items if p not in existing]
    return result


def _read_public_jwks(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise AdminError(f"--jwks-file {path}: cannot read it: {exc.strerror}") from None
    except ValueError as exc:
        raise AdminError(f"--jwks-file {path}: not JSON: {exc}") from None
    if isinstance(doc, dict) and "kty" in doc:
        doc = {"keys": [doc]}
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list) or not doc["keys"]:
        raise AdminError(
            f'--jwks-file {path}: expected a JWK set {{"keys": [...]}} with at least one key'
        )
    keys = []
    for i, jwk in enumerate(doc["keys"]):
        try:
            key = load_jwk(jwk)
        except Exception as exc:  # noqa: BLE001 - joserfc raises various errors on bad JWKs
            raise AdminError(
                f"--jwks-file {path}: keys[{i}] is not a usable public key: {exc}"
            ) from None
        if key.is_private:
            raise AdminError(
                f"--jwks-file {path}: keys[{i}] holds private key material; "
                "register the partner's public keys only"
            )
        keys.append(key.as_dict(private=False))
    return {"keys": keys}


def _new_key_pair(signing_alg: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A signing and an encryption key for a partner: (public JWKS, private JWKS)."""
    keys = [generate_key("sig", signing_alg), generate_key("enc", "ECDH-ES+A256KW")]
    return (
        {"keys": [k.as_dict(private=False) for k in keys]},
        {"keys": [k.as_dict(private=True) for k in keys]},
    )


def _advice(settings: Settings, partner: Partner) -> list[str]:
    notes = []
    has_keys = bool(partner.jwks and partner.jwks.get("keys")) or bool(partner.jwks_url)
    if partner.signature_verified_by_gateway:
        notes.append(
            "this node will not verify the partner's envelope signatures "
            "(signature_verified_by_gateway): make sure its messages can reach this node only "
            "through the gateway that verifies them (an X-Road security server, an mTLS proxy)"
        )
    elif partner.signature_required and not has_keys:
        notes.append(
            "the partner has no public keys, so its signed requests cannot be "
            "verified: give --jwks-url, --jwks-file or --generate-keys "
            "(or --no-signature-required)"
        )
    if partner.encrypt_replies and not has_keys:
        notes.append(
            "--encrypt-replies needs the partner's encryption key (use 'enc') in its "
            "JWKS; until it has one, replies to it fail"
        )
    return notes


def _ensure_http_sig_key(settings: Settings, partner: Partner) -> str | None:
    """Replies in the Ed25519 HTTP-signature profile need an Ed25519 signing key; a node whose
    main key has another algorithm keeps an additional one. Make it now (if the node has keys
    already; otherwise it is made with the others at first start), so that it is published
    before the partner's first reply. Returns a note for the operator if a key was made."""
    if partner.signature_profile != HTTP_SIG or settings.security.signing_alg == "EdDSA":
        return None
    directory = key_dir(settings)
    if not _has_keys(directory):
        return None
    manager = _key_manager(settings)
    try:
        manager._ensure_dir()
        manager.reload()
        if any(
            k.use == "sig" and k.alg == "EdDSA" and k.status == "current"
            for k in manager.list_keys()
        ):
            return None
        key = manager.ensure_signing_key("EdDSA")
    except (KeyStoreError, OSError) as exc:
        raise AdminError(str(exc)) from None
    return (
        f"made an additional Ed25519 signing key {key.kid} in {directory} to sign replies "
        "in the http-sig-ed25519 profile; running nodes publish it within seconds"
    )


def _scopes_text(scopes: dict[str, list[str] | str]) -> str:
    if not scopes:
        return "-"
    return "; ".join(
        f"{reg}: {acts if acts == '*' else ', '.join(acts)}" for reg, acts in scopes.items()
    )


def partner_row(partner: Partner) -> dict[str, str]:
    """One line of `partners list`."""
    encrypted = [
        w
        for w, on in (
            ("requests", partner.require_encryption),
            ("replies", partner.encrypt_replies),
        )
        if on
    ]
    return {
        "sender_id": partner.sender_id,
        "name": partner.name or "-",
        "client_id": partner.client_id or "-",
        "scopes": _scopes_text(partner.scopes),
        "callbacks": ", ".join(partner.callback_prefixes) or "-",
        "profile": partner.signature_profile,
        "signed": _signed_text(partner),
        "encrypted": ", ".join(encrypted) or "no",
        "fields restricted": "yes" if partner.fields else "no",
    }


def _signed_text(partner: Partner) -> str:
    if partner.signature_verified_by_gateway:
        return "by gateway"
    return "required" if partner.signature_required else "optional"


def _limit_text(value: float | int | None) -> str:
    return "the node's default (limits)" if value is None else f"{value:g}"


def partner_details(partner: Partner) -> list[tuple[str, str]]:
    """Every setting of a partner, for `partners show` (secrets as set / not set)."""

    def yes(value: bool) -> str:
        return "yes" if value else "no"

    keys = (partner.jwks or {}).get("keys", [])
    key_text = (
        "; ".join(
            f"{k.get('kid', '?')} ({k.get('use', '-')}, {k.get('alg', k.get('kty'))})" for k in keys
        )
        or "-"
    )
    fields_text = (
        "; ".join(
            f"{reg}: {'all' if paths is None else ', '.join(paths) or 'none'}"
            for reg, paths in partner.fields.items()
        )
        or "all fields of every registry"
    )
    secret = partner.callback_client_secret
    if secret and secret.startswith("env:"):
        secret_text = f"from environment variable {secret[4:]}"
    else:
        secret_text = "set (in the partner file)" if secret else "not set"
    return [
        ("sender_id", partner.sender_id),
        ("name", partner.name or "-"),
        ("client_id", partner.client_id or "-"),
        ("client secret", "set" if partner.client_secret_hash else "not set"),
        ("scopes", _scopes_text(partner.scopes)),
        ("callback prefixes", ", ".join(partner.callback_prefixes) or "-"),
        ("callback base", partner.callback_base or "- (requests must give sender_uri)"),
        ("private callback addresses", "allowed" if partner.allow_private_callbacks else "refused"),
        ("public keys (inline)", key_text),
        ("jwks_url", partner.jwks_url or "-"),
        ("signature profile", partner.signature_profile),
        (
            "signature required",
            "not checked by this node (see below)"
            if partner.signature_verified_by_gateway
            else yes(partner.signature_required)
            + (" (allow_unsigned)" if partner.allow_unsigned else ""),
        ),
        (
            "signature verified by",
            "a gateway in front of this node (signature_verified_by_gateway): not verified by "
            "this node"
            if partner.signature_verified_by_gateway
            else "this node",
        ),
        ("encrypted requests required", yes(partner.require_encryption)),
        ("encrypted replies", yes(partner.encrypt_replies)),
        ("fields", fields_text),
        ("consent purposes", ", ".join(partner.consent_purposes) or "-"),
        ("requests per second", _limit_text(partner.requests_per_second)),
        ("requests per day", _limit_text(partner.requests_per_day)),
        ("callback token_url", partner.token_url or "-"),
        ("callback client_id", partner.callback_client_id or "-"),
        ("callback client secret", secret_text),
    ]


# =============================================================================================
# keys

KEYS_NOTE = (
    "running nodes and workers that use this key directory re-read it within a few seconds, "
    "then sign with the new key and publish the new JWKS; partners that keep a copy of our "
    "JWKS (`dcihub keys jwks`) instead of fetching /.well-known/jwks.json need the new one "
    "before the retired keys expire"
)


@dataclass
class Rotation:
    key_dir: Path
    created: list[KeyInfo]
    retired: list[KeyInfo]  # the keys that were current before; now retiring
    first: bool  # there were no keys: the first ones were created, nothing retired
    retiring_until: datetime | None


def key_dir(settings: Settings) -> Path:
    return settings.security.path(settings.security.key_dir)


def _key_manager(settings: Settings) -> KeyManager:
    options = settings.security
    return KeyManager(
        key_dir(settings),
        overlap=timedelta(days=options.key_overlap_days),
        signing_alg=options.signing_alg,
    )


def _has_keys(directory: Path) -> bool:
    return directory.is_dir() and any(directory.glob("*.json"))


def list_keys(settings: Settings) -> list[KeyInfo]:
    """The node's keys (none if it never started); never creates keys."""
    directory = key_dir(settings)
    if not _has_keys(directory):
        return []
    manager = _key_manager(settings)
    try:
        manager._ensure_dir()  # refuses a directory others could write to, as the node does
        manager.reload()
    except (KeyStoreError, OSError) as exc:
        raise AdminError(str(exc)) from None
    return manager.list_keys()


def rotate_keys(settings: Settings) -> Rotation:
    """Retire the current keys (still published for `key_overlap_days`) and create new ones;
    with no keys yet, create the first ones."""
    directory = key_dir(settings)
    first = not _has_keys(directory)
    manager = _key_manager(settings)
    try:
        manager.load_or_create()
        if first:
            return Rotation(directory, manager.list_keys(), [], True, None)
        before = {k.kid for k in manager.list_keys() if k.status == "current"}
        created = manager.rotate()
    except (KeyStoreError, OSError) as exc:
        raise AdminError(str(exc)) from None
    retired = [k for k in manager.list_keys() if k.kid in before]
    until = max((k.retired_at for k in retired if k.retired_at), default=None)
    return Rotation(directory, created, retired, False, until + manager.overlap if until else None)


def public_jwks(settings: Settings) -> dict[str, Any]:
    """What `/.well-known/jwks.json` publishes: current and retiring public keys."""
    directory = key_dir(settings)
    if not _has_keys(directory):
        return {"keys": []}
    manager = _key_manager(settings)
    try:
        manager._ensure_dir()  # refuses a directory others could write to, as the node does
        manager.reload()
    except (KeyStoreError, OSError) as exc:
        raise AdminError(str(exc)) from None
    return manager.public_jwks()


# =============================================================================================
# audit


def open_store(settings: Settings) -> Store:
    """The configured store, which must exist and hold the audit table (never created here)."""
    url = settings.store_url
    try:
        parsed = make_url(url)
    except Exception as exc:  # noqa: BLE001 - sqlalchemy raises ArgumentError and others
        raise AdminError(f"store_url {url!r} is not a database URL: {exc}") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        if not Path(parsed.database).exists():
            raise AdminError(
                f"no store at {parsed.database}: start the node once "
                "(`dcihub serve`) or check store_url"
            )
    store = Store(url)
    try:
        with store.read() as conn:
            present = inspect(conn).has_table(store.audit.t.name)
    except SQLAlchemyError as exc:
        store.dispose()
        raise AdminError(
            f"cannot open the store {parsed.render_as_string(hide_password=True)}: "
            f"{_first_line(exc)}"
        ) from None
    if not present:
        store.dispose()
        raise AdminError(
            f"the store {parsed.render_as_string(hide_password=True)} has no audit "
            "table: start the node once (`dcihub serve`) or check store_url"
        )
    return store


def _first_line(exc: SQLAlchemyError) -> str:
    origin = getattr(exc, "orig", None) or exc
    return str(origin).strip().splitlines()[0] if str(origin).strip() else type(exc).__name__


def verify_audit(settings: Settings) -> tuple[int, list[Problem]]:
    """Walk the whole hash chain: (rows checked, problems)."""
    store = open_store(settings)
    try:
        with store.read() as conn:
            return store.audit.verify(conn)
    except SQLAlchemyError as exc:
        raise AdminError(f"cannot read the audit trail: {_first_line(exc)}") from None
    finally:
        store.dispose()


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(value: str, now: float | None = None) -> float:
    """`2026-01-01`, `2026-01-01T12:00:00Z` (UTC unless an offset is given), or a duration
    back from now: `90s`, `30m`, `24h`, `7d`, `2w`. Returns a Unix time."""
    text = value.strip()
    match = _RELATIVE.match(text.lower())
    if match:
        return (time.time() if now is None else now) - float(match[1]) * _UNITS[match[2]]
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise AdminError(
            f"--since {value!r}: give a date (2026-01-01), a time "
            "(2026-01-01T12:00:00Z) or a duration (24h, 7d, 30m)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def audit_trail(
    settings: Settings,
    partner: str | None = None,
    since: float | None = None,
    limit: int | None = 100,
) -> list[AuditRow]:
    """The matching audit rows in chain order; with `limit`, the most recent `limit` of them."""
    store = open_store(settings)
    table = store.audit.t
    conditions = []
    if partner:
        conditions.append(table.c.partner == partner)
    if since is not None:
        conditions.append(table.c.ts >= since)
    try:
        with store.read() as conn:
            if limit:
                last = (
                    select(table.c.seq)
                    .where(*conditions)
                    .order_by(table.c.seq.desc())
                    .limit(limit)
                    .subquery()
                )
                conditions.append(table.c.seq.in_(select(last.c.seq)))
            query = select(table).where(*conditions).order_by(table.c.seq)
            return [
                AuditRow(
                    r["seq"],
                    r["ts"],
                    r["partner"],
                    _load_entry(r["entry"]),
                    r["prev_hash"],
                    r["hash"],
                )
                for r in conn.execute(query).mappings()
            ]
    except SQLAlchemyError as exc:
        raise AdminError(f"cannot read the audit trail: {_first_line(exc)}") from None
    finally:
        store.dispose()


def _load_entry(raw: str) -> dict[str, Any]:
    """A row's entry; an entry edited into something that is not a JSON object is shown as
    such (`audit verify` names the row) instead of failing the listing."""
    try:
        entry = orjson.loads(raw)
    except orjson.JSONDecodeError:
        entry = None
    return entry if isinstance(entry, dict) else {"outcome": "(entry is not a JSON object)"}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def audit_summary(row: AuditRow) -> dict[str, Any]:
    """The facts of one audit row that `audit show` prints: every field of the entry (null
    where it does not apply, or where a row written by an older dcihub lacks it), plus `seq`,
    `time`, `records` (how many records the exchange returned or, for a callback, carried) and
    `record_ids`."""
    entry = row.entry
    ids = entry.get("records")
    ids = ids if isinstance(ids, list) else []
    sent = entry.get("records_sent")
    direction = entry.get("direction")
    count = sent if direction == "out" and isinstance(sent, int) else len(ids)
    return {
        "seq": row.seq,
        "time": _iso(row.ts),
        "direction": direction,
        "partner": row.partner,
        "registry": entry.get("registry"),
        "action": entry.get("action"),
        "endpoint": entry.get("endpoint"),
        "target_host": entry.get("target_host"),
        "message_id": entry.get("message_id"),
        "claimed_sender": entry.get("claimed_sender"),
        "transaction_id": entry.get("transaction_id"),
        "correlation_id": entry.get("correlation_id"),
        "status": entry.get("status"),
        "outcome": entry.get("outcome"),
        "attempt": entry.get("attempt"),
        "signature": entry.get("signature"),
        "encrypted": entry.get("encrypted"),
        "records": count,
        "record_ids": ids,
        "records_sent": sent,
        "client_id": entry.get("client_id"),
        "scope": entry.get("scope"),
        "remote": entry.get("remote"),
    }
