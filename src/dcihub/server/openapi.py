"""The OpenAPI document of a node: FastAPI's operational routes plus every DCI endpoint of every
registry served, with the request schemas of dcihub's models of the standard, a worked example
per endpoint (fresh ids and timestamps each time the document is read, so that "Try it out"
works against a running node), and the bearer security scheme of the token endpoint.

Response bodies are described by their envelope (callback header + message) and an outline of
the message; the contracts in the DCI reference material hold their full schemas.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from ..standard.envelope import MsgCallbackHeader, MsgHeader, format_ts
from ..standard.messages import SearchRequestItem, TransactionMessage, TxnStatusRequest
from ..standard.profiles.base import RegistryProfile
from .node import RegistryNode, endpoints_for
from .pipeline import EndpointSpec

BEARER = "bearerAuth"
CALLBACK_HOST = "http://127.0.0.1:9999"  # where the examples' async replies are sent


class SearchMessage(TransactionMessage):
    """`message` of `search` and `sync/search` (SearchRequest)."""

    search_request: list[SearchRequestItem]


RESPONSES = {
    "search": "a 202 ACK; the SearchResponse follows as an on-search callback to sender_uri",
    "sync/search": "a signed response envelope whose message is a SearchResponse "
    "(transaction_id, correlation_id, search_response[] with data.reg_records and pagination)",
    "txn/status": "a 202 ACK; the TxnStatusResponse follows as a txn/on-status callback",
    "sync/txn/status": "a signed response envelope whose message is a TxnStatusResponse "
    "(txnstatus_response: {txn_type, txn_status})",
}


def build_openapi(app: FastAPI, node: RegistryNode) -> dict[str, Any]:
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    components.setdefault("securitySchemes", {})[BEARER] = {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "an access token from POST /oauth2/client/token (client credentials)",
    }
    samples: dict[str, Any] = getattr(app.state, "samples", None) or {}
    sender_id = getattr(app.state, "example_sender_id", None) or "<your sender_id>"
    for name, profile in node.profiles.items():
        for spec in endpoints_for(profile):
            operation = _operation(spec, profile, schemas, samples.get(name) or {}, sender_id)
            schema.setdefault("paths", {})[spec.url_path] = {"post": operation}
    return schema


def _model_schema(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    """A `$ref` to the model's schema, its definitions added to the document's components."""
    found = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for def_name, definition in found.pop("$defs", {}).items():
        schemas.setdefault(def_name, definition)
    schemas.setdefault(model.__name__, found)
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _message_model(spec: EndpointSpec) -> type[BaseModel]:
    if spec.special is not None:
        return spec.special.request_model
    if spec.kind.endswith("txn_status"):
        return TxnStatusRequest
    return SearchMessage


def _operation(
    spec: EndpointSpec,
    profile: RegistryProfile,
    schemas: dict[str, Any],
    samples: dict[str, Any],
    sender_id: str,
) -> dict[str, Any]:
    header_model = MsgCallbackHeader if spec.header == "callback" else MsgHeader
    envelope = {
        "type": "object",
        "required": ["header", "message"],
        "properties": {
            "signature": {
                "type": "string",
                "description": "signature of {header, message} (detached JWS by default; "
                "see docs/security.md)",
            },
            "header": _model_schema(header_model, schemas),
            "message": _model_schema(_message_model(spec), schemas),
        },
    }
    described = RESPONSES.get(spec.path) or (
        f"a signed response envelope (header action '{spec.response_action}') whose message is "
        f"the contract's response to /registry/{spec.path}"
    )
    summary = spec.special.summary if spec.special is not None and spec.special.summary else ""
    kind = "asynchronous" if spec.asynchronous else "synchronous"
    return {
        "tags": [profile.title],
        "summary": summary or f"/registry/{spec.path} ({kind}, action '{spec.action}')",
        "description": f"{kind.capitalize()} DCI call of the {profile.title}: header.action "
        f"'{spec.action}'; answers {described}. Errors: an ERR ack with an err.* code "
        "(docs/api.md).",
        "operationId": f"{profile.name}_{spec.special.name if spec.special else spec.kind}",
        "security": [{BEARER: []}],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": envelope,
                    "example": example_envelope(spec, profile, samples, sender_id),
                }
            },
        },
        "responses": {
            "200" if not spec.asynchronous else "202": {
                "description": described,
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "400": {"description": "ERR ack (err.request.bad, err.signature.invalid, …)"},
            "401": {"description": "no valid access token (HttpErrorResponse + ERR ack)"},
            "403": {"description": "the partner may not call this (HttpErrorResponse + ERR ack)"},
        },
    }


def _sample_identifier(profile: RegistryProfile, samples: dict[str, Any]) -> dict[str, str]:
    for found in samples.get("identifiers") or []:
        if isinstance(found, dict) and found.get("type") and found.get("value"):
            return {"type": str(found["type"]), "value": str(found["value"])}
    entity = profile.entity(profile.default_entity)
    return {"type": entity.identifier_types[0], "value": "<identifier value>"}


def _fill(value: Any, uin: str) -> Any:
    if isinstance(value, str):
        return value.replace("<UIN>", uin)
    if isinstance(value, dict):
        return {k: _fill(v, uin) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, uin) for v in value]
    return value


def example_envelope(
    spec: EndpointSpec, profile: RegistryProfile, samples: dict[str, Any], sender_id: str
) -> dict[str, Any]:
    """A request that works against the node as it is (with the demo's partner and samples)."""
    now = format_ts()
    identifier = _sample_identifier(profile, samples)
    header: dict[str, Any] = {
        "version": "1.0.0",
        "message_id": str(uuid.uuid4()),
        "message_ts": now,
        "action": spec.action,
        "sender_id": sender_id,
        "total_count": 1,
        "is_msg_encrypted": False,
    }
    transaction_id = f"t-{uuid.uuid4().hex[:12]}"
    message: dict[str, Any]
    if spec.special is not None:
        message = _fill(dict(spec.special.example), identifier["value"])
        message["transaction_id"] = transaction_id
        if spec.header == "callback":
            header.update(status="succ", completed_count=1)
    elif spec.kind.endswith("txn_status"):
        message = {
            "transaction_id": transaction_id,
            "txnstatus_request": {
                "reference_id": f"r-{uuid.uuid4().hex[:8]}",
                "txn_type": "search",
                "attribute_type": "transaction_id",
                "attribute_value": "<transaction_id of an earlier search>",
                "locale": "eng",
            },
        }
    elif spec.kind == "subscribe":
        first = profile.event_types[0] if profile.event_types else None
        message = {
            "transaction_id": transaction_id,
            "subscribe_request": [
                {
                    "reference_id": f"r-{uuid.uuid4().hex[:8]}",
                    "timestamp": now,
                    "subscribe_criteria": {
                        "version": "1.0.0",
                        "reg_event_type": first.name if first else "REGISTER",
                        "notify_record_type": first.entity if first else profile.default_entity,
                        "frequency": {
                            "start_time": now,
                            "end_time": "2099-12-31T23:59:59Z",
                            "frequency": "immediate",
                        },
                    },
                    "locale": "eng",
                }
            ],
        }
    elif spec.kind == "unsubscribe":
        message = {
            "transaction_id": transaction_id,
            "timestamp": now,
            "subscription_codes": ["<a subscription code from on-subscribe>"],
        }
    else:
        message = {
            "transaction_id": transaction_id,
            "search_request": [
                {
                    "reference_id": f"r-{uuid.uuid4().hex[:8]}",
                    "timestamp": now,
                    "search_criteria": {
                        "version": "1.0.0",
                        "query_type": "idtype-value",
                        "query": identifier,
                        "pagination": {"page_size": 10, "page_number": 1},
                    },
                    "locale": "eng",
                }
            ],
        }
    if spec.asynchronous:
        callback = {
            "async_txn_status": "txn/on-status",
            "subscribe": "on-subscribe",
            "unsubscribe": "on-unsubscribe",
        }.get(spec.kind, "on-search")
        header["sender_uri"] = f"{CALLBACK_HOST}/registry/{callback}"
    return {"header": header, "message": message}
