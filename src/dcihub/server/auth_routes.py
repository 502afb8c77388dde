"""The node's OAuth2 token endpoint and JWKS (authz_core / jwks_core contracts).

`POST /oauth2/client/token` — client credentials (form body `client_secret_post`, or HTTP Basic);
answers RFC 6749 JSON (`access_token`, `token_type: bearer`, `expires_in` as an integer,
`scope`); refusals are RFC 6749 errors (`invalid_client` 401, `invalid_request` /
`unsupported_grant_type` / `invalid_scope` 400) that also carry the DCI `errors` list.
Every token request, issued or refused, is recorded in the audit trail (never the secret or the
token).
`GET /.well-known/jwks.json` — our signature and encryption public keys, including retired keys
inside the overlap window.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from typing import Any
from urllib.parse import parse_qs, unquote

import anyio
import orjson
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from ..store.audit import AuditEntry
from .guard import Security

log = logging.getLogger("dcihub.auth")

MAX_FORM_BYTES = 8192


def _oauth_error(status: int, error: str, description: str, code: str) -> Response:
    body = {
        "error": error,
        "error_description": description,
        "errors": [{"code": code, "message": description}],
    }
    headers = {"cache-control": "no-store"}
    if status == 401:
        headers["www-authenticate"] = 'Basic realm="dcihub"'
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return None
    return unquote(client_id), unquote(secret)


def add_auth_routes(app: FastAPI, security: Security) -> None:
    @app.post(
        "/oauth2/client/token",
        tags=["Security"],
        summary="OAuth2 client-credentials token (authz_core)",
    )
    async def token(request: Request) -> Response:
        attempt = AuditEntry(
            direction="in",
            action="token",
            endpoint="/oauth2/client/token",
            signature="none",
            encrypted=False,
            records=[],
            remote=request.client.host if request.client else None,
        )
        response = await _token(request, security, attempt)
        return await _audited(request, security, response, attempt)

    @app.get(
        "/.well-known/jwks.json",
        tags=["Security"],
        summary="Public signature and encryption keys (jwks_core)",
    )
    async def jwks() -> Response:
        return Response(
            orjson.dumps(security.keys.public_jwks()),
            media_type="application/json",
            headers={"cache-control": "public, max-age=300"},
        )


async def _token(request: Request, security: Security, attempt: AuditEntry) -> Response:
    """Answer one token request; `attempt` collects what the audit trail records of it."""

    def refuse(status: int, error: str, description: str, code: str) -> Response:
        attempt.outcome = code
        return _oauth_error(status, error, description, code)

    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        return refuse(
            400,
            "invalid_request",
            "send the token request as application/x-www-form-urlencoded",
            "err.request.bad",
        )
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        return refuse(400, "invalid_request", "the token request is too large", "err.request.bad")
    try:
        form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8"), keep_blank_values=True).items()}
    except UnicodeDecodeError:
        return refuse(400, "invalid_request", "the form is not UTF-8", "err.request.bad")
    grant = form.get("grant_type")
    if grant != "client_credentials":
        return refuse(
            400,
            "unsupported_grant_type" if grant else "invalid_request",
            "grant_type must be client_credentials",
            "err.request.bad",
        )
    basic = _basic_credentials(request.headers.get("authorization"))
    client_id, secret = basic if basic else (form.get("client_id"), form.get("client_secret"))
    attempt.client_id = client_id or None  # as claimed (cut by the trail); never the secret
    if not client_id or not secret:
        return refuse(
            401,
            "invalid_client",
            "client authentication failed: give client_id and "
            "client_secret (form) or HTTP Basic credentials",
            "err.request.unauthorized",
        )
    partner = await anyio.to_thread.run_sync(security.partners.authenticate, client_id, secret)
    if partner is None:
        return refuse(
            401, "invalid_client", "client authentication failed", "err.request.unauthorized"
        )
    attempt.partner = partner.sender_id
    scopes = partner.grant_scopes(form.get("scope") or None)
    if not scopes:
        return refuse(
            400,
            "invalid_scope",
            f"none of the requested scopes is granted to partner '{partner.sender_id}'",
            "err.request.forbidden",
        )
    issued: dict[str, Any] = security.issuer.issue(client_id, partner.sender_id, scopes)
    attempt.scope = issued["scope"]
    return Response(
        orjson.dumps(issued),
        media_type="application/json",
        headers={"cache-control": "no-store", "pragma": "no-cache"},
    )


async def _audited(
    request: Request, security: Security, response: Response, attempt: AuditEntry
) -> Response:
    """Record the token request in the audit trail (partner, claimed client id, outcome; never
    the secret or the token) before answering, as the DCI pipeline does for its messages."""
    node = getattr(request.app.state, "node", None)
    if not security.options.audit or node is None:
        return response
    from .committer import RequestWrites

    attempt.status = response.status_code
    attempt.ts = time.time()
    try:
        await node.committer.commit(RequestWrites(audit=[attempt]))
    except Exception:  # nothing may be issued that the trail does not show
        log.exception("could not record a token request in the audit trail")
        return _oauth_error(
            503,
            "temporarily_unavailable",
            "the registry could not record the request; try again later",
            "err.service.unavailable",
        )
    return response
