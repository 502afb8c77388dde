"""What the sync and async clients share: settings, keys, core, token state, receiver."""

from __future__ import annotations

from typing import Any, TypeVar

import httpx

from dcihub.security.partners import JwksResolver
from dcihub.standard.calls import SpecialEndpoint

from .core import ClientCore, Plan
from .envelopes import RawReply
from .errors import (
    AuthenticationError,
    ConfigurationError,
    DCIClientError,
    SignatureVerificationError,
)
from .keys import OwnKeys
from .pending import Pending, Waiter
from .receiver import CallbackReceiver
from .settings import ClientSettings
from .tokens import TokenState

__all__ = ["ClientBase"]

T = TypeVar("T")
JSON = "application/json"


class ClientBase:
    """What the sync and async clients share: settings, keys, core, tokens, receiver."""

    def __init__(
        self,
        settings: ClientSettings | None = None,
        *,
        receiver: CallbackReceiver | None = None,
        **overrides: Any,
    ) -> None:
        if settings is None:
            settings = ClientSettings.build(overrides)
        elif overrides:
            settings = settings.merged(**overrides)
        self.settings = settings
        self.keys = OwnKeys(settings.private_jwks())
        self.core = ClientCore(settings, self.keys)
        self.tokens = TokenState(settings)
        self.receiver: CallbackReceiver | None = None
        self._callback_keys: JwksResolver | None = None
        self._auth_headers: tuple[str, dict[str, str]] = ("", {})
        self._receiver_pending = receiver

    def _attach_pending_receiver(self) -> None:
        if self._receiver_pending is not None:
            self.attach(self._receiver_pending)
            self._receiver_pending = None

    def attach(self, receiver: CallbackReceiver) -> CallbackReceiver:
        """Use `receiver` for this client's callbacks: it trusts this registry (its
        `receiver_id` and JWKS) and also decrypts with this client's keys."""
        self.receiver = receiver
        receiver.use_keys(self.keys)
        self._callback_keys = receiver.trust_registry(self.settings)
        return receiver

    _registry_keys: JwksResolver  # set by the subclasses, on their own HTTP client

    @property
    def registry_keys(self) -> JwksResolver:
        """The registry's public keys (cached by kid, refetched on an unknown kid)."""
        return self._registry_keys

    def special_endpoints(self) -> tuple[SpecialEndpoint, ...]:
        """The registry-specific calls the registry's dcihub profile declares (path,
        request model, example): what `call()` can send."""
        return self.core.special_endpoints()

    def callback_url(self, path: str) -> str:
        """Where the registry is to send the callback `path` (on-search, txn/on-status...)."""
        if self.settings.callback_url:
            return f"{self.settings.callback_url}/registry/{path}"
        if self.receiver is not None:
            return self.receiver.callback_url(path)
        raise ConfigurationError(
            "an asynchronous call needs somewhere for the registry to answer: a callback "
            "receiver (receiver=CallbackReceiver(...)) or callback_url="
        )

    def _headers(self, token: str) -> dict[str, str]:
        cached_token, headers = self._auth_headers
        if cached_token != token:
            headers = {"content-type": JSON, "authorization": f"Bearer {token}"}
            self._auth_headers = (token, headers)
        return headers

    def _waiter(self, plan: Plan[T], callback: str) -> Waiter | None:
        if self.receiver is None:
            return None
        waiter = Waiter(
            plan.transaction_id, plan.message_id, callback, plan.read, self._callback_keys
        )
        self.receiver.expect(waiter)
        return waiter

    def _pending(self, plan: Plan[T], raw: RawReply, waiter: Waiter | None) -> Pending[T]:
        assert raw.ack is not None
        forget = self.receiver.forget if self.receiver is not None else None
        return Pending(waiter, raw.ack, plan.transaction_id, plan.message_id, forget)

    def _refused_token(self, plan: Plan[Any], response: httpx.Response) -> DCIClientError:
        try:
            self.core.parse_reply(plan, response.status_code, response.content)
        except DCIClientError as exc:
            detail = getattr(exc, "detail", exc.message)
        else:  # pragma: no cover - a 401 with an envelope
            detail = "no reason given"
        return plan.error(
            AuthenticationError(
                f"the registry refused the access token (HTTP 401) after a fresh one: {detail}",
                http_status=401,
            )
        )

    def _explain_keys(self, exc: SignatureVerificationError) -> SignatureVerificationError:
        error = self.registry_keys.last_error
        if error and error not in exc.message:
            exc.message += f" ({error})"
        return exc
