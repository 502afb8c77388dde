"""Outbound callbacks to partners: minimised at build time (node), then here — check the
target, encrypt (when the partner asks), sign with the partner's signature profile, and add the
bearer token obtained from the partner's own token endpoint."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import orjson

from ..security.callbacks import check_callback_target
from ..security.errors import SecurityError
from ..security.tokens import ClientTokenCache
from ..store.outbox import OutboxRow
from .guard import Security, seal
from .node import ENCRYPT_KEY
from .worker import CallbackSender, Outgoing, PermanentFailure

log = logging.getLogger("dcihub.sender")


class SecureCallbackSender(CallbackSender):
    def __init__(self, security: Security, client: httpx.AsyncClient) -> None:
        self.security = security
        self.tokens = ClientTokenCache(client)

    def _partner(self, row: OutboxRow) -> Any:
        partner = self.security.partners.get(row.sender_id)
        if partner is None:
            raise PermanentFailure(f"partner '{row.sender_id}' is no longer registered")
        return partner

    async def check_target(self, row: OutboxRow) -> None:
        partner = self._partner(row)
        if not row.target_url:
            raise PermanentFailure("no callback URL")
        host = urlsplit(row.target_url).hostname or ""
        try:
            if host:
                await anyio.to_thread.run_sync(check_callback_target, row.target_url, partner)
        except SecurityError as exc:
            raise PermanentFailure(f"callback target refused: {exc.message}") from None

    async def renew(self, row: OutboxRow) -> bool:
        partner = self._partner(row)
        if not (partner.token_url and partner.callback_client_id):
            return False
        self.tokens.invalidate(partner.token_url, partner.callback_client_id)
        return True

    async def prepare(self, row: OutboxRow, envelope: dict[str, Any]) -> Outgoing:
        partner = self._partner(row)
        resolver = self.security.resolver(partner)
        encrypt = bool(envelope.pop(ENCRYPT_KEY, False)) or partner.encrypt_replies
        if encrypt:
            await resolver.refresh_for(None)
        try:  # in a worker thread: a callback may hold megabytes of records
            sealed = await anyio.to_thread.run_sync(
                partial(seal, envelope, partner, resolver, self.security.keys, encrypt=encrypt)
            )
        except Exception as exc:  # e.g. no encryption key published: retrying will not help
            raise PermanentFailure(f"cannot seal the callback: {exc}") from None
        headers = {"content-type": "application/json"}
        if partner.token_url and partner.callback_client_id:
            secret = partner.callback_secret()
            try:
                token = await self.tokens.get(
                    partner.token_url, partner.callback_client_id, secret or ""
                )
            except SecurityError as exc:
                raise httpx.TransportError(f"token from {partner.token_url}: {exc}") from None
            headers["authorization"] = f"Bearer {token}"
        assert row.target_url is not None
        body = await anyio.to_thread.run_sync(orjson.dumps, sealed)
        return Outgoing(row.target_url, body, headers)
