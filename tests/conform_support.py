"""A deliberately broken DCI registry for the conformance kit's tests: `DefectProxy` is a
real HTTP server on loopback in front of a real dcihub node. It forwards every request and
answer, and plants one defect at a time (`proxy.defect = "..."`): it rewrites requests
(re-signed with the test partner's key, as a registry that ignores a rule would see them),
answers (re-signed with the node's own key, so that only the planted rule is broken), and the
callbacks the node sends (async requests' `sender_uri` is pointed at the proxy, which forwards
each callback to the kit's receiver, mutated or not).

`DEFECTS` maps each defect to the requirement ids the kit must report failing — and no others.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dcihub.security.jwe import decrypt_message
from dcihub.security.keys import load_jwk
from dcihub.security.signatures import sign, verify
from dcihub.standard.envelope import format_ts
from support import LiveServer, TestPartner, free_port, start_server

JSON = "application/json"

# defect -> the requirements the kit must report failing (exactly these)
# defects of the notify callback, judged only with a --trigger (tests/test_conformance_notify.py)
NOTIFY_DEFECTS: dict[str, set[str]] = {
    "notify_wrong_action": {"NOTIFY-002"},
    "notify_without_code": {"NOTIFY-003"},
}

DEFECTS: dict[str, set[str]] = {
    "reply_version": {"ENV-VERSION-001"},
    "reply_message_id_echo": {"ENV-MSGID-001"},
    "reply_stale_message_ts": {"ENV-TS-001"},
    "reply_wrong_action": {"ENV-ACTION-001"},
    "reply_sender_is_tester": {"ENV-PARTIES-001"},
    "reply_bad_status": {"ENV-STATUS-001", "CONTRACT-001"},
    "reply_wrong_total_count": {"ENV-STATUS-001"},
    "reply_wrong_transaction": {"ENV-TXN-001"},
    "reply_no_correlation": {"ENV-TXN-001"},
    "unsigned_replies": {"SEC-SIG-003"},
    "bad_signature_replies": {"SEC-SIG-003"},
    "missing_reference_id": {"SEARCH-ITEM-001"},
    "records_not_matching": {"DATA-001"},
    "predicate_ignored": {"QUERY-PREDICATE-001"},
    "expression_rejected": {"QUERY-EXPRESSION-001"},
    "sort_ignored": {"SORT-001"},
    "pages_from_zero": {"PAGE-001"},
    "page_size_ignored": {"PAGE-002"},
    "wrong_total_count": {"PAGE-003"},
    "batch_items_swapped": {"BATCH-001"},
    "wrong_ack_status": {"ACK-001"},
    "callback_never_sent": {"SEARCH-ASYNC-001"},
    "callback_wrong_action": {"ENV-ACTION-001"},
    "callback_wrong_transaction": {"SEARCH-ASYNC-002", "ENV-TXN-001"},
    "callback_missing_correlation": {"SEARCH-ASYNC-002", "ENV-TXN-001"},
    "callback_wrong_correlation": {"SEARCH-ASYNC-002"},
    "callback_unsigned": {"SEC-SIG-003"},
    "txn_status_empty": {"TXN-SYNC-001"},
    "subscribe_no_codes": {"SUB-001"},
    "missing_token_accepted": {"SEC-TOKEN-001"},
    "forged_token_accepted": {"SEC-TOKEN-002"},
    "expired_token_accepted": {"SEC-TOKEN-003"},
    "wrong_secret_accepted": {"SEC-TOKEN-004"},
    "unsigned_accepted": {"SEC-SIG-001"},
    "tampered_accepted": {"SEC-SIG-002"},
    "replay_processed_twice": {"SEC-REPLAY-001"},
    "stale_ts_accepted": {"SEC-TS-001"},
    "sender_uri_accepted": {"SEC-SENDERURI-001"},
    "sender_id_accepted": {"SEC-SENDERID-001"},
    "encryption_dropped": {"SEC-ENC-001"},
    "jwks_leaks_private": {"SEC-JWKS-001"},
    "refusal_without_dci_body": {"ACK-002"},
    "bad_json_500": {"ROB-JSON-001"},
    "wrong_types_500": {"ROB-TYPE-001"},
    "huge_body_500": {"ROB-SIZE-001"},
    "deep_body_500": {"ROB-DEPTH-001"},
    "unknown_fields_500": {"ROB-UNKNOWN-001"},
    "wrong_action_accepted": {"ROB-ACTION-001"},
}

ASYNC_PATHS = ("search", "txn/status", "subscribe", "unsubscribe")


class DefectProxy:
    def __init__(self, server: LiveServer, partner: TestPartner, registry: str) -> None:
        self.server = server
        self.partner = partner
        self.registry = registry
        self.defect: str | None = None
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.issued: set[str] = set()  # tokens the node issued through the proxy
        self._targets: dict[str, str] = {}  # callback receiver base -> its number
        from dcihub.server.factory import load_keys

        self._node_key = load_keys(server.settings).signing_key()
        self._partner_key = partner.signing_key()
        self._partner_jwks = partner.private_jwks
        self._http = httpx.AsyncClient(timeout=30)
        self._lock = threading.Lock()
        app = Starlette(
            routes=[
                Route("/cb/{target}/registry/{path:path}", self._callback, methods=["POST"]),
                Route("/{path:path}", self._forward, methods=["GET", "POST"]),
            ]
        )
        self._server, self._thread = start_server(app, self.port)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    @property
    def registry_url(self) -> str:
        return f"{self.base_url}/{self.registry}"

    # -- the node's requests and answers -------------------------------------------------------

    async def _forward(self, request: Request) -> Response:
        path = request.path_params["path"]
        body = await request.body()
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("content-type", "authorization", "accept")
        }
        defect = self.defect
        dci_path = path.split("/registry/", 1)[1] if "/registry/" in path else None
        if dci_path is not None:
            planted = self._plant_request(defect, dci_path, body, headers)
            if isinstance(planted, Response):
                return planted
            body = planted
        if path == "oauth2/client/token" and defect == "wrong_secret_accepted":
            body = str(
                httpx.QueryParams(
                    {
                        "grant_type": "client_credentials",
                        "client_id": self.partner.client_id,
                        "client_secret": self.partner.client_secret,
                    }
                )
            ).encode()
        upstream = await self._http.request(
            request.method, f"{self.server.base_url}/{path}", content=body, headers=headers
        )
        content = upstream.content
        if path == "oauth2/client/token" and upstream.status_code == 200:
            self.issued.add(upstream.json()["access_token"])
        if path == ".well-known/jwks.json" and defect == "jwks_leaks_private":
            doc = upstream.json()
            doc["keys"] = [
                {**k, "d": "bGVha2Vk"} if k.get("use") == "enc" else k for k in doc["keys"]
            ]
            content = orjson.dumps(doc)
        if dci_path is not None:
            content = self._plant_reply(defect, dci_path, body, upstream.status_code, content)
        status = upstream.status_code
        if defect == "refusal_without_dci_body" and status == 401:
            return Response(b"Unauthorized", status_code=401, media_type="text/plain")
        return Response(content, status_code=status, media_type=JSON)

    def _plant_request(
        self, defect: str | None, path: str, body: bytes, headers: dict[str, str]
    ) -> bytes | Response:
        token = (headers.get("authorization") or "").removeprefix("Bearer ").strip()
        if defect == "missing_token_accepted" and not token:
            headers["authorization"] = f"Bearer {next(iter(self.issued))}"
        if defect in ("forged_token_accepted", "expired_token_accepted") and token:
            if token not in self.issued:
                signatures = {t.rsplit(".", 1)[-1] for t in self.issued}
                altered = token.rsplit(".", 1)[-1] in signatures
                if (defect == "expired_token_accepted") == altered:
                    headers["authorization"] = f"Bearer {next(iter(self.issued))}"
        if defect == "huge_body_500" and len(body) > 5 * 1024 * 1024:
            return Response(b"Internal Server Error", status_code=500)
        try:
            doc = json.loads(body)
        except RecursionError:
            if defect == "deep_body_500":
                return Response(b"Internal Server Error", status_code=500)
            return body
        except ValueError:
            if defect == "bad_json_500":
                return Response(b"Internal Server Error", status_code=500)
            return body
        if not isinstance(doc, dict) or not isinstance(doc.get("header"), dict):
            if defect == "wrong_types_500":
                return Response(b"Internal Server Error", status_code=500)
            return body
        header, message = doc["header"], doc.get("message")
        if defect == "wrong_types_500" and (
            not isinstance(message, dict) or not isinstance(header.get("total_count"), int)
        ):
            return Response(b"Internal Server Error", status_code=500)
        if defect == "unknown_fields_500" and "x_conformance_unknown" in header:
            return Response(b"Internal Server Error", status_code=500)
        signed = bool(doc.get("signature"))
        genuine = signed and self._verifies(doc)  # signed by the partner, unchanged since
        changed = False
        if defect == "unsigned_accepted" and not signed:
            changed = True
        if defect == "tampered_accepted" and signed:
            changed = True
        if defect == "replay_processed_twice" and genuine:
            header["message_id"] = _fresh_id()
            changed = True
        if defect == "stale_ts_accepted" and genuine:
            header["message_ts"] = format_ts()
            changed = True
        if defect == "sender_id_accepted" and header.get("sender_id") != self.partner.sender_id:
            header["sender_id"] = self.partner.sender_id
            changed = True
        if defect == "wrong_action_accepted" and path == "sync/search":
            if header.get("action") != "search":
                header["action"] = "search"
                changed = True
        if isinstance(message, dict) and path == "sync/search":
            changed |= self._plant_search_request(defect, message)
        if path in ASYNC_PATHS and isinstance(header.get("sender_uri"), str):
            uri = header["sender_uri"]
            parts = urlsplit(uri)
            if parts.hostname == "127.0.0.1" and genuine:
                base, _, rest = uri.partition("/registry/")
                with self._lock:
                    self._targets.setdefault(base, str(len(self._targets) + 1))
                    number = self._targets[base]
                header["sender_uri"] = f"{self.base_url}/cb/{number}/registry/{rest}"
                changed = True
            elif defect == "sender_uri_accepted":
                header["sender_uri"] = f"{self.base_url}/cb/null/registry/on-search"
                changed = True
        if not changed:
            return body
        envelope = {"header": header, "message": message}
        return orjson.dumps({"signature": sign(header, message, self._partner_key), **envelope})

    def _verifies(self, doc: dict[str, Any]) -> bool:
        public = self._partner_key  # a private key verifies as well as its public half
        try:
            verify(
                doc["signature"], doc["header"], doc.get("message"), lambda kid, alg=None: public
            )
        except Exception:  # noqa: BLE001 - SecurityError: not the partner's, or changed
            return False
        return True

    def _plant_search_request(self, defect: str | None, message: dict[str, Any]) -> bool:
        changed = False
        for item in message.get("search_request") or []:
            criteria = item.get("search_criteria") or {}
            pagination = criteria.get("pagination")
            if defect == "predicate_ignored" and criteria.get("query_type") == "predicate":
                if len(criteria.get("query") or []) == 2:
                    first = criteria["query"][0]["expression1"]
                    criteria["query"] = [
                        {
                            "seq_num": 1,
                            "expression1": {
                                **first,
                                "operator": "gte",
                                "attribute_value": "1800-01-01",
                            },
                        }
                    ]
                    changed = True
            if defect == "sort_ignored" and any(
                s.get("sort_order") == "desc" for s in criteria.get("sort") or []
            ):
                del criteria["sort"]
                changed = True
            if isinstance(pagination, dict) and pagination.get("page_size", 99) <= 4:
                if defect == "pages_from_zero":
                    pagination["page_number"] = pagination.get("page_number", 1) + 1
                    changed = True
                if defect == "page_size_ignored":
                    pagination["page_size"] = 10
                    changed = True
        return changed

    def _plant_reply(
        self, defect: str | None, path: str, request: bytes, status: int, content: bytes
    ) -> bytes:
        try:
            doc = orjson.loads(content)
            sent = orjson.loads(request)
        except orjson.JSONDecodeError:
            return content
        if not isinstance(doc, dict) or not isinstance(sent, dict):
            return content
        if path in ASYNC_PATHS and defect == "wrong_ack_status" and path == "search":
            if isinstance(doc.get("message"), dict) and doc["message"].get("ack_status") == "ACK":
                doc["message"]["ack_status"] = "OK"
                return orjson.dumps(doc)
        header, message = doc.get("header"), doc.get("message")
        if not isinstance(header, dict) or not isinstance(message, dict) or status >= 300:
            return content
        sent_header = sent.get("header") if isinstance(sent.get("header"), dict) else {}
        sent_message = sent.get("message") if isinstance(sent.get("message"), dict) else {}
        if defect == "encryption_dropped" and header.get("is_msg_encrypted"):
            message = decrypt_message(message, self._partner_decryption_key)
            header["is_msg_encrypted"] = False
            return self._sealed(header, message)
        if header.get("is_msg_encrypted"):
            return content
        if defect == "unsigned_replies":
            return orjson.dumps({"header": header, "message": message})
        if defect == "bad_signature_replies":
            return orjson.dumps({**doc, "header": {**header, "meta": {"changed": True}}})
        mutate = _REPLY_MUTATIONS.get(defect or "")
        if mutate is None or not mutate(header, message, sent_header, sent_message, path):
            return content
        return self._sealed(header, message)

    def _partner_decryption_key(self, kid: str | None) -> Any:
        for jwk in self._partner_jwks["keys"]:
            if jwk.get("use") == "enc" and (kid is None or jwk.get("kid") == kid):
                return load_jwk(jwk)
        return None

    def _sealed(self, header: dict[str, Any], message: Any) -> bytes:
        signature = sign(header, message, self._node_key)
        return orjson.dumps({"signature": signature, "header": header, "message": message})

    # -- the node's callbacks ------------------------------------------------------------------

    async def _callback(self, request: Request) -> Response:
        number = request.path_params["target"]
        target = next((b for b, n in self._targets.items() if n == number), "null")
        path = request.path_params["path"]
        body = await request.body()
        defect = self.defect
        ack = {"message": {"ack_status": "ACK", "timestamp": format_ts(), "correlation_id": "x"}}
        if target == "null" or (defect == "callback_never_sent" and path == "on-search"):
            return Response(orjson.dumps(ack), status_code=202, media_type=JSON)
        doc = orjson.loads(body)
        header, message = doc.get("header"), doc.get("message")
        changed = False
        if path == "on-search" and isinstance(header, dict) and isinstance(message, dict):
            if defect == "callback_wrong_action":
                header["action"] = "search"
                changed = True
            elif defect == "callback_wrong_transaction":
                message["transaction_id"] = _fresh_id()
                changed = True
            elif defect == "callback_missing_correlation":
                message.pop("correlation_id", None)
                changed = True
            elif defect == "callback_wrong_correlation":
                message["correlation_id"] = _fresh_id()
                changed = True
            elif defect == "callback_unsigned":
                body = orjson.dumps({"header": header, "message": message})
        if path == "on-subscribe" and defect == "subscribe_no_codes" and isinstance(message, dict):
            for item in message.get("subscribe_response") or []:
                item.pop("subscriptions", None)
                item.pop("subscription_code", None)
            changed = True
        if path == "notify" and isinstance(header, dict) and isinstance(message, dict):
            if defect == "notify_wrong_action":
                header["action"] = "on-notify"
                changed = True
            elif defect == "notify_without_code":
                if isinstance(header.get("meta"), dict):
                    header["meta"].pop("subscription_codes", None)
                changed = True
        if changed:
            body = self._sealed(header, message)
        answer = await self._http.post(
            f"{target}/registry/{path}",
            content=body,
            headers={"content-type": JSON},
        )
        return Response(answer.content, status_code=answer.status_code, media_type=JSON)


def _fresh_id() -> str:
    from dcihub.client.envelopes import new_id

    return new_id()


Mutation = Callable[[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any], str], bool]


def _items(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in message.get("search_response") or [] if isinstance(i, dict)]


def _sent_items(sent: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in sent.get("search_request") or [] if isinstance(i, dict)]


def _query_type(sent: dict[str, Any]) -> str | None:
    items = _sent_items(sent)
    return (items[0].get("search_criteria") or {}).get("query_type") if items else None


def _set(key: str, value: Any) -> Mutation:
    def mutate(header: dict, message: dict, sh: dict, sm: dict, path: str) -> bool:
        header[key] = value
        return True

    return mutate


def _echo_message_id(header: dict, message: dict, sh: dict, sm: dict, path: str) -> bool:
    header["message_id"] = sh.get("message_id")
    return True


def _sender_is_tester(header: dict, message: dict, sh: dict, sm: dict, path: str) -> bool:
    header["sender_id"] = sh.get("sender_id")
    return True


def _total_count_plus_one(header: dict, message: dict, sh: dict, sm: dict, path: str) -> bool:
    if not isinstance(header.get("total_count"), int) or "search_response" not in message:
        return False
    header["total_count"] += 1
    return True


def _wrong_transaction(header: dict, message: dict, sh: dict, sm: dict, path: str) -> bool:
    message["transaction_id"] = f"other-{message.get('transaction_id')}"
    return True


def _no_correlation(header: dict, message: dict, sh: dict, sm: dict, path: str) -> bool:
    message.pop("correlation_id", None)
    return True


def _no_reference_id(header: dict, message: dict, sh: dict, sm: dict, path: str) -> bool:
    for item in _items(message):
        item.pop("reference_id", None)
    return bool(_items(message))


def _records_not_matching(header: dict, message: dict, sh: dict, sm: dict, path: str) -> bool:
    if path != "sync/search" or len(_sent_items(sm)) != 1 or _query_type(sm) != "idtype-value":
        return False
    text = orjson.dumps(message).decode()
    wanted = (_sent_items(sm)[0]["search_criteria"]["query"] or {}).get("value")
    if not wanted or wanted not in text:
        return False
    message.clear()
    message.update(orjson.loads(text.replace(f'"{wanted}"', '"9999999999"')))
    return True


def _expression_rejected(header: dict, message: dict, sh: dict, sm: dict, path: str) -> bool:
    if path != "sync/search" or _query_type(sm) != "expression":
        return False
    for item in _items(message):
        item.update(
            status="rjct",
            status_reason_code="rjct.search_criteria.invalid",
            status_reason_message="expression queries are not supported",
        )
        item.pop("data", None)
    return True


def _wrong_total_count(header: dict, message: dict, sh: dict, sm: dict, path: str) -> bool:
    changed = False
    for item in _items(message):
        pagination = item.get("pagination")
        if isinstance(pagination, dict) and isinstance(pagination.get("total_count"), int):
            pagination["total_count"] += 7
            changed = True
    return changed


def _batch_swapped(header: dict, message: dict, sh: dict, sm: dict, path: str) -> bool:
    items = _items(message)
    if len(items) != 3:
        return False
    items[0]["reference_id"], items[1]["reference_id"] = (
        items[1]["reference_id"],
        items[0]["reference_id"],
    )
    return True


def _txn_status_empty(header: dict, message: dict, sh: dict, sm: dict, path: str) -> bool:
    if path != "sync/txn/status":
        return False
    message.pop("txnstatus_response", None)
    return True


_REPLY_MUTATIONS: dict[str, Mutation] = {
    "reply_version": _set("version", "2.0.0"),
    "reply_message_id_echo": _echo_message_id,
    "reply_stale_message_ts": _set("message_ts", "2020-01-01T00:00:00Z"),
    "reply_wrong_action": _set("action", "search"),
    "reply_sender_is_tester": _sender_is_tester,
    "reply_bad_status": _set("status", "done"),
    "reply_wrong_total_count": _total_count_plus_one,
    "reply_wrong_transaction": _wrong_transaction,
    "reply_no_correlation": _no_correlation,
    "missing_reference_id": _no_reference_id,
    "records_not_matching": _records_not_matching,
    "expression_rejected": _expression_rejected,
    "wrong_total_count": _wrong_total_count,
    "batch_items_swapped": _batch_swapped,
    "txn_status_empty": _txn_status_empty,
}

__all__ = ["DEFECTS", "NOTIFY_DEFECTS", "DefectProxy", "copy"]
