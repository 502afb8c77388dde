"""Access to the operator pages (`/console/`, `/metrics`, `/status`).

With `operations.access: token` (the default) a request needs the operator token: as
`Authorization: Bearer <token>` (Prometheus' `bearer_token_file`), or as the password of HTTP
Basic with any user name (a browser asks for it). The token lives in `operations.token_file`,
made with 32 random bytes and mode 0600 when missing. `open` lets anyone who reaches the node
read them (the demo on loopback).
"""

from __future__ import annotations

import base64
import hmac
import os
import secrets
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from ..config import Settings
from ..standard.codes import ErrorCode
from ..standard.envelope import err_ack, http_error_body
from .pipeline import json_response, new_correlation_id


def token_path(settings: Settings) -> Path:
    return settings.security.path(settings.operations.token_file)


def ensure_operator_token(settings: Settings) -> str:
    """The operator token, made (0600) when the file does not exist yet."""
    path = token_path(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # made meanwhile by another process
            return path.read_text("utf-8").strip()
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(token + "\n")
        return token
    return path.read_text("utf-8").strip()


class OperatorAccess:
    def __init__(self, settings: Settings) -> None:
        self.open = settings.operations.access == "open"
        self.token = "" if self.open else ensure_operator_token(settings)
        self.where = str(token_path(settings))

    def refused(self, request: Request) -> Response | None:
        """None when the request may read operator pages, else the 401 to answer."""
        if self.open:
            return None
        offered = _offered_token(request.headers.get("authorization", ""))
        if offered and hmac.compare_digest(offered.encode(), self.token.encode()):
            return None
        message = (
            "the operator pages need the operator token (in "
            f"{self.where}): send 'Authorization: Bearer <token>', or log in with any user "
            "name and the token as password"
        )
        body = http_error_body(ErrorCode.REQUEST_UNAUTHORIZED, message)
        body.update(err_ack(ErrorCode.REQUEST_UNAUTHORIZED, message, new_correlation_id()))
        response = json_response(401, body)
        response.headers["www-authenticate"] = 'Basic realm="dcihub operations"'
        return response


def _offered_token(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None
