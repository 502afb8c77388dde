"""Access tokens for the registry's API (DIGEST §4.3), shared by the sync and async clients.

`TokenState` holds the current token and decides when to fetch one: before the first call,
`token_leeway_seconds` before it expires (or half-way through a very short lifetime), and once
after the registry answered 401 to it. The HTTP exchange itself (a form POST with
`grant_type=client_credentials`, `client_id`, `client_secret`) is made by the client, which
hands the answer to `accept`. A fixed bearer token (`settings.token`) is used as it is.
"""

from __future__ import annotations

import email.utils
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from .errors import AuthenticationError, ConfigurationError
from .settings import ClientSettings

__all__ = ["TokenState", "TokenRequest"]

DEFAULT_TTL = 60.0


@dataclass(frozen=True, slots=True)
class TokenRequest:
    url: str
    form: dict[str, str]
    headers: dict[str, str]


class TokenState:
    def __init__(self, settings: ClientSettings, now: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.now = now
        self.fixed = settings.token.get_secret_value() if settings.token else None
        self._token: str | None = None
        self._refresh_at = 0.0
        self.fetches = 0
        if self.fixed is None:
            missing = [
                name
                for name in ("token_url", "client_id", "client_secret")
                if getattr(settings, name) is None
            ]
            if missing:
                raise ConfigurationError(
                    f"no way to get an access token: give {', '.join(missing)} (OAuth2 client "
                    "credentials) or token (a fixed bearer token)"
                )

    @property
    def can_refresh(self) -> bool:
        return self.fixed is None

    def current(self) -> str | None:
        """The token to send now, or None when one must be fetched first."""
        if self.fixed is not None:
            return self.fixed
        if self._token is not None and self.now() < self._refresh_at:
            return self._token
        return None

    def invalidate(self) -> None:
        """Forget the token (the registry refused it)."""
        self._token = None

    def set(self, token: str, expires_in: float) -> None:
        """Use a token obtained elsewhere (e.g. kept by a CLI between runs) until
        `expires_in` seconds from now, less the leeway; a 401 still fetches a fresh one."""
        self._keep(token, expires_in)

    def _keep(self, token: str, ttl: float) -> None:
        leeway = self.settings.token_leeway_seconds
        margin = leeway if ttl > 2 * leeway else ttl / 2
        self._token = token
        self._refresh_at = self.now() + ttl - margin

    def request(self) -> TokenRequest:
        settings = self.settings
        assert settings.token_url and settings.client_id and settings.client_secret
        return TokenRequest(
            settings.token_url,
            {
                "grant_type": "client_credentials",
                "client_id": settings.client_id,
                "client_secret": settings.client_secret.get_secret_value(),
            },
            {
                "accept": "application/json",
                "timestamp": email.utils.formatdate(usegmt=True),
                "message_id": uuid.uuid4().hex,
            },
        )

    def accept(self, status: int, body: bytes) -> str:
        """Read the token endpoint's answer; keep and return the token."""
        url = self.settings.token_url
        doc: Any = None
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
        if status != 200:
            raise AuthenticationError(
                f"the token endpoint {url} refused client {self.settings.client_id!r} "
                f"(HTTP {status}): {_reason(doc, body)}",
                http_status=status,
            )
        if not isinstance(doc, dict) or not isinstance(doc.get("access_token"), str):
            raise AuthenticationError(
                f"the token endpoint {url} answered without an access_token: {_reason(doc, body)}",
                http_status=status,
            )
        expires_in = doc.get("expires_in")
        try:  # an integer, or a string as in the spec's example ("36000")
            ttl = float(expires_in) if expires_in not in (None, "") else DEFAULT_TTL
        except (TypeError, ValueError):
            raise AuthenticationError(
                f"the token endpoint {url} gave expires_in {expires_in!r}; expected seconds",
                http_status=status,
            ) from None
        if ttl <= 0:
            raise AuthenticationError(f"the token endpoint {url} gave expires_in {expires_in!r}")
        token = str(doc["access_token"])
        self._keep(token, ttl)
        self.fetches += 1
        return token


def _reason(doc: Any, body: bytes) -> str:
    if isinstance(doc, dict):
        for key in ("error_description", "error"):
            if isinstance(doc.get(key), str):
                return str(doc[key])
        errors = doc.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return str(errors[0].get("message") or errors[0].get("code"))
    text = body.decode("utf-8", "replace").strip()
    return (text[:200] or "empty body").replace("\n", " ")
