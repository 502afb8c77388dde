"""The partner registry: who may call us, with which keys, for what, and how we call them back.

A partner is identified by its DCI `sender_id` and authenticates to the token endpoint with its
OAuth `client_id`/secret (stored hashed only). Its public keys come from an inline JWKS and/or a
`jwks_url` (DIGEST §6 #5: there is no standard way to find them). The registry is one YAML file:

```yaml
partners:
  - sender_id: spmis.example.org
    name: Example SP-MIS
    client_id: spmis
    client_secret_hash: scrypt$16384$8$1$…$…
    jwks_url: https://spmis.example.org/.well-known/jwks.json
    scopes: {crvs: [search, subscribe], social: "*"}     # registry -> actions or "*"
    callback_prefixes: [https://spmis.example.org/dci/]
    callback_base: https://spmis.example.org/dci   # callbacks of requests without sender_uri
    fields: {crvs: [identifier, name.given_name, birth_date]}   # absent registry = all
    query_fields: {crvs: [identifier, birth_date]}   # filter/sort on; absent registry = fields
    max_reply_records: 2000                  # absent: the node's limits.max_reply_records
    requests_per_second: 20                  # absent: limits.partner_requests_per_second
    requests_per_day: 500000                 # absent: limits.partner_requests_per_day
    encrypt_replies: true
    token_url: https://spmis.example.org/oauth2/client/token
    callback_client_id: registry
    callback_client_secret: env:SPMIS_CALLBACK_SECRET   # or the secret itself
```

`signature_verified_by_gateway: true` (never the default) is for a partner whose messages reach
us only through a gateway that checks their signatures (an X-Road security server, an mTLS
proxy): its envelope `signature` is then not verified here, and the audit trail says so.

`JwksResolver` turns a partner's keys into joserfc key objects cached by kid; an unknown kid
triggers a refetch of `jwks_url`, at most once per `min_refetch_seconds`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, cast

import httpx
import yaml

from .errors import PartnerConfigError
from .keys import AsymmetricKey, _atomic_write, load_jwk
from .signatures import PROFILES
from .tokens import _actions_for, grant_scopes, hash_secret, verify_secret

__all__ = ["Partner", "PartnerRegistry", "JwksResolver", "httpx_fetch"]

log = logging.getLogger(__name__)


@dataclass
class Partner:
    """One organisation allowed to exchange DCI messages with us."""

    sender_id: str
    name: str = ""
    client_id: str | None = None
    client_secret_hash: str | None = None
    jwks: dict[str, Any] | None = None
    jwks_url: str | None = None
    scopes: dict[str, list[str] | str] = field(default_factory=dict)
    callback_prefixes: list[str] = field(default_factory=list)
    # Where callbacks go when a request has no sender_uri (agreed at onboarding): this base
    # + the standard path (`/registry/on-search`, `/registry/notify`, ...). DIGEST §6 #14.
    callback_base: str | None = None
    allow_private_callbacks: bool = False
    fields: dict[str, list[str] | None] = field(default_factory=dict)
    query_fields: dict[str, list[str] | None] = field(default_factory=dict)
    require_signature: bool = True
    require_encryption: bool = False
    encrypt_replies: bool = False
    signature_profile: str = "jws-detached"
    consent_purposes: list[str] = field(default_factory=list)
    allow_unsigned: bool = False
    sign_replies: bool = True
    token_url: str | None = None
    callback_client_id: str | None = None
    callback_client_secret: str | None = None
    max_reply_records: int | None = None  # None: the node's limits.max_reply_records
    max_reply_bytes: int | None = None  # None: the node's limits.max_reply_bytes
    # its envelope signatures are checked by a gateway in front of us, not here (explicit only)
    signature_verified_by_gateway: bool = False
    # rate limits of its DCI requests; None: the node's limits.partner_requests_per_*
    requests_per_second: float | None = None
    requests_per_day: int | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        where = f"partner {self.sender_id!r}"
        if not isinstance(self.sender_id, str) or not self.sender_id.strip():
            raise PartnerConfigError("a partner needs a non-empty sender_id")
        if self.signature_profile not in PROFILES:
            raise PartnerConfigError(
                f"{where}: signature_profile {self.signature_profile!r} is not one of {PROFILES}"
            )
        for registry, actions in self.scopes.items():
            if actions != "*" and not (
                isinstance(actions, list) and all(isinstance(a, str) for a in actions)
            ):
                raise PartnerConfigError(
                    f"{where}: scopes[{registry!r}] must be a list of actions or '*'"
                )
        for member in ("fields", "query_fields"):
            rules = getattr(self, member)
            if not isinstance(rules, dict):
                raise PartnerConfigError(f"{where}: {member} must map registries to lists")
            for registry, paths in rules.items():
                if paths is not None and not (
                    isinstance(paths, list) and all(isinstance(p, str) for p in paths)
                ):
                    raise PartnerConfigError(
                        f"{where}: {member}[{registry!r}] must be a list or null"
                    )
        if self.jwks is not None:
            if not isinstance(self.jwks, dict) or not isinstance(self.jwks.get("keys"), list):
                raise PartnerConfigError(f"{where}: jwks must be a JWK set {{'keys': [...]}}")
            for jwk in self.jwks["keys"]:
                if any(m in jwk for m in ("d", "p", "q", "k")):
                    raise PartnerConfigError(
                        f"{where}: jwks holds a private or symmetric key; register public keys only"
                    )
        for name in ("max_reply_records", "max_reply_bytes"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise PartnerConfigError(f"{where}: {name} must be a positive whole number")
        rate = self.requests_per_second
        if rate is not None and (
            isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0
        ):
            raise PartnerConfigError(f"{where}: requests_per_second must be a positive number")
        daily = self.requests_per_day
        if daily is not None and (
            isinstance(daily, bool) or not isinstance(daily, int) or daily < 1
        ):
            raise PartnerConfigError(f"{where}: requests_per_day must be a positive whole number")
        if not isinstance(self.signature_verified_by_gateway, bool):
            raise PartnerConfigError(
                f"{where}: signature_verified_by_gateway must be true or false (a YAML "
                f"boolean), not {self.signature_verified_by_gateway!r}"
            )
        if not isinstance(self.callback_prefixes, list):
            raise PartnerConfigError(f"{where}: callback_prefixes must be a list of URLs")
        if self.callback_base is not None:
            from .callbacks import check_sender_uri
            from .errors import SenderUriError

            if not isinstance(self.callback_base, str) or not self.callback_base:
                raise PartnerConfigError(f"{where}: callback_base must be a URL")
            try:
                check_sender_uri(self.callback_url("on-search"), self)
            except SenderUriError as exc:
                raise PartnerConfigError(
                    f"{where}: callback_base {self.callback_base!r} is not under the partner's "
                    f"callback prefixes ({exc.message})"
                ) from None
        if not self.sign_replies and not self.allow_unsigned:
            raise PartnerConfigError(
                f"{where}: sign_replies false is only for partners that may send unsigned "
                "messages (allow_unsigned)"
            )

    # -- authorisation --------------------------------------------------------------------

    def allows(self, registry: str, action: str) -> bool:
        """May this partner call `action` (e.g. "search") on `registry` (e.g. "crvs")?"""
        allowed = _actions_for(self.scopes, registry)
        return "*" in allowed or action in allowed

    def grant_scopes(self, requested: str | Iterable[str] | None = None) -> list[str]:
        """Qualified scopes for a token request (see `tokens.grant_scopes`)."""
        return grant_scopes(self.scopes, requested)

    def allowed_fields(self, registry: str) -> list[str] | None:
        """Field paths this partner may receive from `registry`; None = all."""
        if registry in self.fields:
            return self.fields[registry]
        return self.fields.get("*")

    def queryable_fields(self, registry: str) -> list[str] | None:
        """Field paths this partner may filter and sort on in `registry`'s records: its
        `query_fields` for that registry, by default the fields it may receive; None = all."""
        if registry in self.query_fields:
            return self.query_fields[registry]
        if "*" in self.query_fields:
            return self.query_fields["*"]
        return self.allowed_fields(registry)

    @property
    def signature_required(self) -> bool:
        """Must requests carry a signature? (A signature that is sent is always verified,
        except for a partner whose signatures a gateway verifies: see `verifies_signatures`.)"""
        return self.require_signature and not self.allow_unsigned

    @property
    def verifies_signatures(self) -> bool:
        """Does this node verify the partner's envelope signatures? Not when the partner's
        entry says a gateway in front of the node does (`signature_verified_by_gateway`)."""
        return not self.signature_verified_by_gateway

    def check_secret(self, client_secret: str) -> bool:
        return verify_secret(client_secret, self.client_secret_hash)

    def callback_url(self, path: str) -> str:
        """The partner's callback for `path` (e.g. "on-search") under its callback base."""
        assert self.callback_base is not None
        return f"{self.callback_base.rstrip('/')}/registry/{path}"

    def callback_secret(self) -> str | None:
        """Our client secret at the partner's token endpoint (`env:NAME` reads the env)."""
        value = self.callback_client_secret
        if value and value.startswith("env:"):
            name = value[4:]
            if name not in os.environ:
                raise PartnerConfigError(
                    f"partner {self.sender_id!r}: environment variable {name} is not set"
                )
            return os.environ[name]
        return value

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        defaults = {f.name: f.default for f in fields(self) if f.default is not f.default_factory}
        return {
            k: v
            for k, v in data.items()
            if k == "sender_id" or v not in (None, [], {}) and v != defaults.get(k, object())
        }


class PartnerRegistry:
    """All partners, by sender_id and by client_id."""

    def __init__(self, partners: Iterable[Partner] = ()) -> None:
        self._by_sender: dict[str, Partner] = {}
        self._by_client: dict[str, Partner] = {}
        for partner in partners:
            self.add(partner)

    @classmethod
    def load(cls, path: Path | str) -> PartnerRegistry:
        path = Path(path)
        try:
            doc = yaml.safe_load(path.read_text("utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise PartnerConfigError(f"cannot read partner file {path}: {exc}") from exc
        entries = doc.get("partners", []) if isinstance(doc, dict) else None
        if not isinstance(entries, list):
            raise PartnerConfigError(f"{path}: expected a mapping with a 'partners' list")
        known = {f.name for f in fields(Partner)}
        partners = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise PartnerConfigError(f"{path}: partners[{i}] is not a mapping")
            if "client_secret" in entry:
                raise PartnerConfigError(
                    f"{path}: partners[{i}] has a plain client_secret; store only "
                    "client_secret_hash (dcihub.security.tokens.hash_secret(secret))"
                )
            unknown = set(entry) - known
            if unknown:
                raise PartnerConfigError(
                    f"{path}: partners[{i}] has unknown keys {sorted(unknown)}"
                )
            try:
                partners.append(Partner(**entry))
            except TypeError as exc:
                raise PartnerConfigError(f"{path}: partners[{i}]: {exc}") from exc
        return cls(partners)

    def save(self, path: Path | str) -> None:
        """Write the registry as YAML (mode 0600, atomically); secrets only as hashes."""
        doc = {"partners": [p.to_dict() for p in self]}
        data = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode("utf-8")
        _atomic_write(Path(path), data)

    def add(self, partner: Partner, client_secret: str | None = None) -> Partner:
        """Register a partner; `client_secret` (if given) is stored as its hash."""
        if partner.sender_id in self._by_sender:
            raise PartnerConfigError(f"sender_id {partner.sender_id!r} is already registered")
        if partner.client_id and partner.client_id in self._by_client:
            raise PartnerConfigError(f"client_id {partner.client_id!r} is already registered")
        if client_secret is not None:
            partner.client_secret_hash = hash_secret(client_secret)
        self._by_sender[partner.sender_id] = partner
        if partner.client_id:
            self._by_client[partner.client_id] = partner
        return partner

    def remove(self, sender_id: str) -> bool:
        partner = self._by_sender.pop(sender_id, None)
        if partner is None:
            return False
        if partner.client_id:
            self._by_client.pop(partner.client_id, None)
        return True

    def get(self, sender_id: str | None) -> Partner | None:
        return self._by_sender.get(sender_id) if sender_id else None

    def by_client_id(self, client_id: str | None) -> Partner | None:
        return self._by_client.get(client_id) if client_id else None

    def authenticate(self, client_id: str, client_secret: str) -> Partner | None:
        """The partner for these client credentials, or None (timing does not leak ids)."""
        partner = self.by_client_id(client_id)
        if partner is None:
            verify_secret(client_secret, None)
            return None
        return partner if partner.check_secret(client_secret) else None

    def __iter__(self) -> Iterator[Partner]:
        return iter(self._by_sender.values())

    def __len__(self) -> int:
        return len(self._by_sender)


# -- partner keys -----------------------------------------------------------------------------

Fetch = Callable[[str], Mapping[str, Any]] | Callable[[str], Awaitable[Mapping[str, Any]]]


SyncFetch = Callable[[str], Mapping[str, Any]]
AsyncFetch = Callable[[str], Awaitable[Mapping[str, Any]]]


def httpx_fetch(client: httpx.Client | httpx.AsyncClient) -> Fetch:
    """A `fetch` for JwksResolver that GETs the JWKS with an httpx client (sync or async)."""
    if isinstance(client, httpx.AsyncClient):

        async def fetch_async(url: str) -> Mapping[str, Any]:
            response = await client.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            return _json_object(response, url)

        return fetch_async

    def fetch(url: str) -> Mapping[str, Any]:
        response = client.get(url, headers={"Accept": "application/json"})
        response.raise_for_status()
        return _json_object(response, url)

    return fetch


def _json_object(response: httpx.Response, url: str) -> Mapping[str, Any]:
    doc = response.json()
    if not isinstance(doc, dict):
        raise ValueError(f"{url} did not answer a JSON object (a JWK set)")
    return doc


class JwksResolver:
    """A partner's public keys by kid, with refetch of `jwks_url` on an unknown kid.

    Use `resolve` as the `resolve_key` of `signatures.verify`. With a synchronous `fetch` it
    refetches by itself; with an async `fetch`, `await refresh_for(kid)` first (e.g. with the
    kid from `signatures.inspect_signature`) and `resolve` then only reads the cache.
    """

    def __init__(
        self,
        partner: Partner,
        fetch: Fetch | None = None,
        *,
        min_refetch_seconds: float = 60.0,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.partner = partner
        self.fetch = fetch
        self.min_refetch_seconds = min_refetch_seconds
        self.now = now
        self.last_error: str | None = None
        self._is_async = fetch is not None and inspect.iscoroutinefunction(fetch)
        self._last_fetch: float | None = None
        self._inline = self._parse(partner.jwks or {"keys": []}, "inline jwks")
        self._fetched: dict[str, AsymmetricKey] = {}

    # -- lookups ----------------------------------------------------------------------------

    def resolve(self, kid: str | None, alg: str | None = None) -> AsymmetricKey | None:
        """The partner's public key for `kid` (for `kid=None`: its only signing key)."""
        key = self._lookup(kid, alg)
        if key is None and not self._is_async and self._may_fetch():
            self._store(self._fetch_sync())
            key = self._lookup(kid, alg)
        return key

    async def refresh_for(self, kid: str | None) -> None:
        """Refetch the JWKS if `kid` is unknown and the rate limit allows."""
        if self._lookup(kid, None) is not None or not self._may_fetch():
            return
        assert self.fetch is not None and self.partner.jwks_url is not None
        self._last_fetch = self.now()
        try:
            if self._is_async:
                result = await cast(AsyncFetch, self.fetch)(self.partner.jwks_url)
            else:
                result = await asyncio.to_thread(cast(SyncFetch, self.fetch), self.partner.jwks_url)
        except Exception as exc:  # noqa: BLE001 - network/JSON errors: keep old keys
            self._record_error(exc)
            return
        self._store(result)

    def encryption_key(self, alg: str | None = None) -> AsymmetricKey | None:
        """The partner's key to encrypt replies to (use `enc`; prefers ECDH-ES+A256KW)."""
        candidates = [
            k for k in self.keys() if k.get("use") == "enc" and (alg is None or k.alg == alg)
        ]
        if not candidates and self._may_fetch() and not self._is_async:
            self._store(self._fetch_sync())
            return self.encryption_key(alg)
        candidates.sort(key=lambda k: k.alg != "ECDH-ES+A256KW")
        return candidates[0] if candidates else None

    def keys(self) -> list[AsymmetricKey]:
        merged = {**self._fetched, **self._inline}
        return list(merged.values())

    # -- internals --------------------------------------------------------------------------

    def _lookup(self, kid: str | None, alg: str | None) -> AsymmetricKey | None:
        if kid is not None:
            return self._inline.get(kid) or self._fetched.get(kid)
        signing = [k for k in self.keys() if k.get("use") in (None, "sig")]
        if alg is not None:
            signing = [k for k in signing if k.alg in (None, alg)]
        return signing[0] if len(signing) == 1 else None

    def _may_fetch(self) -> bool:
        if self.fetch is None or not self.partner.jwks_url:
            return False
        return self._last_fetch is None or (
            self.now() - self._last_fetch >= self.min_refetch_seconds
        )

    def _fetch_sync(self) -> Mapping[str, Any] | None:
        assert self.fetch is not None and self.partner.jwks_url is not None
        self._last_fetch = self.now()
        try:
            return cast(SyncFetch, self.fetch)(self.partner.jwks_url)  # not async: see callers
        except Exception as exc:  # noqa: BLE001 - network/JSON errors: keep old keys
            self._record_error(exc)
            return None

    def _record_error(self, exc: Exception) -> None:
        self.last_error = f"fetching {self.partner.jwks_url} failed: {exc}"
        log.warning("partner %s: %s", self.partner.sender_id, self.last_error)

    def _store(self, jwks: Mapping[str, Any] | None) -> None:
        if jwks is None:
            return
        parsed = self._parse(jwks, self.partner.jwks_url or "jwks_url")
        if parsed or isinstance(jwks.get("keys"), list):
            self._fetched = parsed
            self.last_error = None

    def _parse(self, jwks: Mapping[str, Any], source: str) -> dict[str, AsymmetricKey]:
        keys: dict[str, AsymmetricKey] = {}
        entries = jwks.get("keys") if isinstance(jwks, Mapping) else None
        if not isinstance(entries, list):
            self.last_error = f"{source} is not a JWK set"
            return keys
        for entry in entries:
            try:
                key = load_jwk(entry)
            except Exception as exc:  # noqa: BLE001 - skip one bad key, keep the others
                log.warning(
                    "partner %s: skipping a key in %s: %s", self.partner.sender_id, source, exc
                )
                continue
            if key.is_private:
                log.warning(
                    "partner %s: %s publishes a private key; ignoring it",
                    self.partner.sender_id,
                    source,
                )
                continue
            keys[str(key.kid)] = key
        return keys
