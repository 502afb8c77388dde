"""The keys of an exchange: the client's own private keys, and the registry's public keys.

`OwnKeys` holds the client's private JWK set (parsed once): the signing key for each signature
profile and the decryption keys by kid. `registry_keys` builds the registry's key resolver: the
security layer's `JwksResolver` over the registry's JWKS (inline and/or `jwks_url`), cached by
kid and refetched on an unknown kid at most every `jwks_refetch_seconds`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from dcihub.security.keys import AsymmetricKey, load_jwk
from dcihub.security.partners import Fetch, JwksResolver, Partner, httpx_fetch
from dcihub.security.signatures import HTTP_SIG

from .errors import ConfigurationError
from .settings import ClientSettings

__all__ = ["OwnKeys", "registry_keys"]


class OwnKeys:
    """The client's private keys (a JWK set: signing key(s) and decryption key(s))."""

    def __init__(self, jwks: Mapping[str, Any] | None) -> None:
        self.signing: list[AsymmetricKey] = []
        self.decryption: dict[str, AsymmetricKey] = {}
        entries = jwks.get("keys") if isinstance(jwks, Mapping) else None
        if jwks is not None and not isinstance(entries, list):
            raise ConfigurationError('the client\'s keys must be a JWK set {"keys": [...]}')
        for index, entry in enumerate(entries or []):
            try:
                key = load_jwk(entry)
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(
                    f"the client's key #{index + 1} is unusable: {exc}"
                ) from None
            if not key.is_private:
                raise ConfigurationError(
                    f"the client's key {key.kid!r} is a public key; signing and decrypting "
                    "need the private key set (e.g. the demo's demo-partner.jwk.json)"
                )
            use = key.get("use")
            if use == "enc":
                self.decryption[str(key.kid)] = key
            elif use in (None, "sig"):
                self.signing.append(key)
        self._by_profile: dict[str, AsymmetricKey] = {}

    def add(self, other: OwnKeys) -> None:
        """Also use `other`'s keys (a receiver serving clients with different key sets)."""
        known = {str(k.kid) for k in self.signing}
        self.signing.extend(k for k in other.signing if str(k.kid) not in known)
        for kid, key in other.decryption.items():
            self.decryption.setdefault(kid, key)
        self._by_profile.clear()

    @property
    def empty(self) -> bool:
        return not self.signing and not self.decryption

    def signing_key(self, profile: str) -> AsymmetricKey:
        """The key to sign with `profile` (http-sig-ed25519 needs an Ed25519 key)."""
        found = self._by_profile.get(profile)
        if found is not None:
            return found
        if profile == HTTP_SIG:
            candidates = [k for k in self.signing if getattr(k, "curve_name", None) == "Ed25519"]
            if not candidates:
                raise ConfigurationError(
                    "signature profile http-sig-ed25519 needs an Ed25519 signing key in the "
                    "client's keys (dcihub partners add --signature-profile http-sig-ed25519 "
                    "--generate-keys makes one)"
                )
        else:
            candidates = self.signing
        if not candidates:
            raise ConfigurationError(
                "no signing key: give the client's private JWK set (keys_file=...), or "
                "sign=False if the registry lets this client send unsigned messages"
            )
        self._by_profile[profile] = candidates[0]
        return candidates[0]

    def decryption_key(self, kid: str | None) -> AsymmetricKey | None:
        """One of the client's decryption keys by kid (the only one when kid is None)."""
        if kid is None:
            return next(iter(self.decryption.values())) if len(self.decryption) == 1 else None
        return self.decryption.get(kid)

    def public_jwks(self) -> dict[str, Any]:
        keys = [*self.signing, *self.decryption.values()]
        return {"keys": [k.as_dict(private=False) for k in keys]}


def registry_keys(
    settings: ClientSettings, http: httpx.Client | httpx.AsyncClient | Fetch | None
) -> JwksResolver:
    """The registry's public keys: inline `registry_jwks` and/or `jwks_url`, fetched with
    `http` (an httpx client, or a fetch function): a synchronous fetch happens when needed,
    an asynchronous one on `await refresh_for(kid)`."""
    if settings.jwks_url is None and settings.registry_jwks is None and settings.verify_replies:
        raise ConfigurationError(
            "the registry's keys are unknown: give jwks_url (or registry_jwks) to verify its "
            "replies, or verify_replies=False"
        )
    label = settings.receiver_id or settings.base_url
    try:
        partner = Partner(sender_id=label, jwks=settings.registry_jwks, jwks_url=settings.jwks_url)
    except Exception as exc:  # noqa: BLE001 - PartnerConfigError names the problem
        raise ConfigurationError(f"registry_jwks: {exc}") from None
    fetch: Fetch | None = None
    if isinstance(http, httpx.Client | httpx.AsyncClient):
        fetch = httpx_fetch(http)
    elif http is not None:
        fetch = http
    if not settings.jwks_url:
        fetch = None
    return JwksResolver(partner, fetch, min_refetch_seconds=settings.jwks_refetch_seconds)
