"""Tests of the contract loader/validator in tests/contract.py (not of the server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator

from contract import (
    CORE_APIS,
    REGISTRIES,
    ContractError,
    ContractLoadError,
    is_rfc3339_date_time,
    load_contract,
    load_core_contract,
)
from specdir import require_spec_dir

TS = "2025-01-15T10:30:00+00:00"
SYNC_SEARCH = "/registry/sync/search"
FORM = "application/x-www-form-urlencoded"
DIGEST_2_12_REGISTRIES = ("social", "crvs", "fr", "ibr")


def contract(registry: str):
    return load_contract(require_spec_dir(), registry)


# --- payload builders (fresh objects on every call) -------------------------------------------


def request_header(action: str, **overrides) -> dict:
    header = {
        "version": "1.0.0",
        "message_id": "m-1",
        "message_ts": TS,
        "action": action,
        "sender_id": "spmis.example.org",
        "receiver_id": "sr.example.org",
        "total_count": 1,
        "is_msg_encrypted": False,
        "meta": {},
    }
    return {**header, **overrides}


def callback_header(action: str, **overrides) -> dict:
    header = {
        "version": "1.0.0",
        "message_id": "m-2",
        "message_ts": TS,
        "action": action,
        "status": "succ",
        "total_count": 1,
        "completed_count": 1,
        "sender_id": "sr.example.org",
        "receiver_id": "spmis.example.org",
    }
    return {**header, **overrides}


def record() -> dict:
    return {
        "@type": "Member",
        "member_identifier": "M-0001",
        "demographic_info": {"name": {"given_name": "Ana", "surname": "Lima"}, "sex": "F"},
    }


def search_request(query_type: str = "idtype-value", query=None, **header) -> dict:
    """DIGEST §2.12 minimal sync-search request (without the signature placeholder)."""
    return {
        "header": request_header("search", **header),
        "message": {
            "transaction_id": "t1",
            "search_request": [
                {
                    "reference_id": "r1",
                    "timestamp": TS,
                    "search_criteria": {
                        "query_type": query_type,
                        "query": query if query is not None else {"type": "UIN", "value": "1234"},
                        "pagination": {"page_size": 10, "page_number": 1},
                        "sort": [{"attribute_name": "registration_date", "sort_order": "asc"}],
                    },
                    "locale": "eng",
                }
            ],
        },
    }


def search_response_message(reg_records=None, status: str = "succ") -> dict:
    return {
        "transaction_id": "t1",
        "correlation_id": "c1",
        "search_response": [
            {
                "reference_id": "r1",
                "timestamp": TS,
                "status": status,
                "data": {
                    "version": "1.0.0",
                    "reg_type": "ns:org:RegistryType:Social",
                    "reg_record_type": "Member",
                    "reg_records": [record()] if reg_records is None else reg_records,
                },
                "pagination": {"page_size": 10, "page_number": 1, "total_count": 1},
                "locale": "eng",
            }
        ],
    }


def search_response(**kwargs) -> dict:
    """DIGEST §2.12 minimal sync-search response with a concrete record."""
    return {"header": callback_header("on-search"), "message": search_response_message(**kwargs)}


def predicate(operator: str = "ge", value=60) -> list:
    return [
        {
            "seq_num": 1,
            "expression1": {
                "attribute_name": "age",
                "operator": operator,
                "attribute_value": value,
            },
            "condition": "and",
            "expression2": {
                "attribute_name": "household_size",
                "operator": "lt",
                "attribute_value": 5,
            },
        }
    ]


def ack(status: str = "ACK", **extra) -> dict:
    return {"message": {"ack_status": status, "timestamp": TS, "correlation_id": "c1", **extra}}


# --- (a) DIGEST §2.12 minimal payloads -------------------------------------------------------


@pytest.mark.parametrize("registry", DIGEST_2_12_REGISTRIES)
def test_minimal_sync_search_request_and_response_validate(registry):
    sync_search = contract(registry)
    sync_search.validate_request(SYNC_SEARCH, search_request())
    sync_search.validate_response(SYNC_SEARCH, search_response())


@pytest.mark.parametrize("registry", DIGEST_2_12_REGISTRIES)
def test_minimal_search_request_validates_on_async_path_and_on_search_callback(registry):
    registry_contract = contract(registry)
    registry_contract.validate_request("/registry/search", search_request())
    registry_contract.validate_request("/registry/on-search", search_response())


def test_contract_error_is_an_assertion_error():
    with pytest.raises(AssertionError):
        contract("social").validate_request(SYNC_SEARCH, {"message": {}})


# --- (b) the anyOf patch: integer attribute values, bad operator --------------------------------


@pytest.mark.parametrize("registry", REGISTRIES)
def test_integer_attribute_values_in_predicate_query_pass(registry):
    registry_contract = contract(registry)
    assert "patch_ambiguous_oneof" in registry_contract.applied_patches
    body = search_request("predicate", predicate("ge", 60))
    assert registry_contract.errors_request(SYNC_SEARCH, body) == []


@pytest.mark.parametrize("value", [25, 2.5, "25", True, {"from": 1, "to": 2}])
def test_every_attribute_value_kind_passes(value):
    body = search_request("predicate", predicate("eq", value))
    assert contract("social").errors_request(SYNC_SEARCH, body) == []


def test_integer_identifier_value_passes():
    body = search_request("idtype-value", {"type": "UIN", "value": 1234})
    assert contract("crvs").errors_request(SYNC_SEARCH, body) == []


def test_expression_query_passes():
    query = {"type": "ns:org:QueryType:expression", "value": {"expression": {"age": {"$gt": 5}}}}
    assert contract("social").errors_request(SYNC_SEARCH, search_request("expression", query)) == []


@pytest.mark.parametrize("registry", REGISTRIES)
def test_unknown_operator_fails(registry):
    errors = contract(registry).errors_request(
        SYNC_SEARCH, search_request("predicate", predicate("gte"))
    )
    assert len(errors) == 1
    assert errors[0].startswith(
        "$.message.search_request[0].search_criteria.query[0].expression1.operator:"
    )
    assert "'gte' is not one of" in errors[0]


# --- (c) violation messages name the JSON path and the schema path -----------------------------


def test_bogus_status_fails_naming_the_path():
    with pytest.raises(ContractError) as raised:
        contract("social").validate_response(SYNC_SEARCH, search_response(status="bogus"))
    message = str(raised.value)
    assert "$.message.search_response[0].status: 'bogus' is not one of" in message
    assert "[schema: properties/message/oneOf/0/properties/search_response/items" in message
    assert SYNC_SEARCH in message


def test_every_violation_is_listed():
    body = search_response(status="bogus")
    del body["message"]["correlation_id"]
    body["header"]["status"] = "done"
    errors = contract("fr").errors_response(SYNC_SEARCH, body)
    assert [error.split(":")[0] for error in errors] == [
        "$.header.status",
        "$.message",
        "$.message.search_response[0].status",
    ]
    assert "'correlation_id' is a required property" in errors[1]


# --- (d) format checking is on ----------------------------------------------------------------


def test_message_ts_without_timezone_fails():
    errors = contract("social").errors_request(
        SYNC_SEARCH, search_request(message_ts="2025-01-15T10:30:00")
    )
    assert errors == [
        "$.header.message_ts: '2025-01-15T10:30:00' is not a 'date-time' "
        "[schema: properties/header/allOf/0/properties/message_ts/format]"
    ]


@pytest.mark.parametrize(
    "value",
    [
        "2025-01-15T10:30:00Z",
        "2025-01-15T10:30:00+00:00",
        "2022-12-04T17:20:07-04:00",
        "2023-10-17T11:26:02.512+00:00",
        "2016-12-31T23:59:60Z",
        "2025-01-15t10:30:00z",
    ],
)
def test_rfc3339_date_time_accepts(value):
    assert is_rfc3339_date_time(value)


@pytest.mark.parametrize(
    "value",
    [
        "2025-01-15T10:30:00",
        "2025-01-15",
        "2025-01-15 10:30:00Z",
        "2025-02-30T10:30:00Z",
        "2025-01-15T24:00:00Z",
        "2025-01-15T10:30:00+0000",
        "2025-01-15T10:30:00+24:00",
        "15.01.2025",
        "",
    ],
)
def test_rfc3339_date_time_rejects(value):
    assert not is_rfc3339_date_time(value)


# --- (e) DR search responses carry an array ------------------------------------------------------


def test_dr_on_search_with_reg_records_array_passes():
    dr = contract("dr")
    assert "patch_search_reg_records_array" in dr.applied_patches
    dr.validate_request("/registry/on-search", search_response())
    dr.validate_response(SYNC_SEARCH, search_response())


def test_dr_on_search_with_reg_records_object_fails():
    errors = contract("dr").errors_request(
        "/registry/on-search", search_response(reg_records=record())
    )
    assert len(errors) == 1 and "is not of type 'array'" in errors[0]


def test_dr_notify_keeps_one_record_object_per_event():
    body = {
        "header": callback_header("notify"),
        "message": {
            "transaction_id": "t1",
            "notify_event": [
                {
                    "reference_id": "r1",
                    "timestamp": TS,
                    "data": {
                        "reg_event_type": "REGISTER",
                        "reg_record_type": "DisabledPerson",
                        "reg_records": record(),
                    },
                }
            ],
        },
    }
    contract("dr").validate_request("/registry/notify", body)


@pytest.mark.parametrize("registry", ["crvs", "fr", "social", "ibr", "ess"])
def test_txn_status_search_branch_carries_an_array(registry):
    body = {
        "header": callback_header("txn-on-status"),
        "message": {
            "transaction_id": "t2",
            "correlation_id": "c2",
            "txnstatus_response": {"txn_type": "search", "txn_status": search_response_message()},
        },
    }
    contract(registry).validate_response("/registry/sync/txn/status", body)


# --- (f) acknowledgements -------------------------------------------------------------------


@pytest.mark.parametrize("registry", REGISTRIES)
def test_ack_validates_as_response_of_async_search(registry):
    registry_contract = contract(registry)
    registry_contract.validate_response("/registry/search", ack("ACK"))
    registry_contract.validate_response(
        "/registry/search", ack("ERR", error={"code": "err.request.bad", "message": "bad envelope"})
    )


def test_bad_ack_fails():
    errors = contract("social").errors_response(
        "/registry/search", ack("OK", error={"code": "err.request.invalid", "message": "x"})
    )
    assert [error.split(":")[0] for error in errors] == [
        "$.message.ack_status",
        "$.message.error.code",
    ]


# --- (g) every path compiles; patched paths work ----------------------------------------------


@pytest.mark.parametrize("registry", REGISTRIES)
def test_every_path_yields_compiling_schemas_without_refs(registry):
    registry_contract = contract(registry)
    assert registry_contract.paths
    for path in registry_contract.paths:
        schemas = [registry_contract.request_schema(path), registry_contract.response_schema(path)]
        for schema in schemas:
            Draft7Validator.check_schema(schema)
            assert "$ref" not in json.dumps(schema, default=str), path


@pytest.mark.parametrize("name", CORE_APIS)
def test_core_response_schemas_compile_without_refs(name):
    core = load_core_contract(require_spec_dir(), name)
    for path in core.paths:
        schema = core.response_schema(path)
        Draft7Validator.check_schema(schema)
        assert "$ref" not in json.dumps(schema, default=str), path


def test_contracts_are_cached():
    assert contract("crvs") is contract("crvs")
    assert contract("crvs") is load_contract(str(require_spec_dir()), "crvs")


def test_returned_schemas_are_copies():
    schema = contract("social").request_schema(SYNC_SEARCH)
    schema["properties"].clear()
    assert contract("social").request_schema(SYNC_SEARCH)["properties"]


def test_unknown_registry_and_path_are_rejected():
    with pytest.raises(ValueError):
        load_contract(require_spec_dir(), "xyz")
    with pytest.raises(RuntimeError, match="no path"):
        contract("dr").request_schema("/registry/txn/status")


def test_fr_on_subscribe_is_an_operation():
    fr = contract("fr")
    assert "patch_fr_on_subscribe_operation" in fr.applied_patches
    message = {
        "transaction_id": "t1",
        "correlation_id": "c1",
        "subscribe_response": [
            {
                "reference_id": "r1",
                "timestamp": TS,
                "status": "succ",
                "subscriptions": [{"code": "S-1", "status": "subscribe", "timestamp": TS}],
            }
        ],
    }
    # a header carrying request and callback fields satisfies every registry (DIGEST §6 #7)
    body = {"header": callback_header("on-subscribe"), "message": message}
    for registry in REGISTRIES:
        contract(registry).validate_request("/registry/on-subscribe", body)
    fr.validate_response("/registry/on-subscribe", ack())


def test_ibr_security_schemes_typo_is_patched():
    assert "patch_ibr_security_schemes_typo" in contract("ibr").applied_patches


def test_ibr_enrolled_response_is_a_sync_envelope():
    body = {
        "header": callback_header("on-search"),
        "message": {
            "transaction_id": "t1",
            "correlation_id": "c1",
            "enrolled_response": [
                {
                    "reference_id": "r1",
                    "timestamp": TS,
                    "status": "succ",
                    "status_reason_message": "found",
                    "enrolled_status": "yes",
                }
            ],
        },
    }
    contract("ibr").validate_response("/registry/sync/enrolled", body)


def ess_enrolled_response(enrolled_status: str) -> dict:
    return {
        "header": callback_header("on-search"),
        "message": {
            "transaction_id": "t1",
            "correlation_id": "c1",
            "enrolled_response": [
                {
                    "reference_id": "r1",
                    "timestamp": TS,
                    "status": "succ",
                    "enrolled_status": enrolled_status,
                }
            ],
        },
    }


def test_ess_check_enrollment_response_is_a_sync_envelope():
    ess = contract("ess")
    assert "patch_ess_check_enrollment_envelope" in ess.applied_patches
    for status in ("Active", "Deceased", "Suspended", "Inactive", "Reinstated", "Awaiting Renewal"):
        ess.validate_response("/registry/sync/check-enrollment", ess_enrolled_response(status))
    errors = ess.errors_response("/registry/sync/check-enrollment", ess_enrolled_response("Exited"))
    assert len(errors) == 1 and "'Exited' is not one of" in errors[0]  # DIGEST §9


def test_ess_check_enrollment_request_takes_the_flat_query():
    body = {
        "header": request_header("search"),
        "message": {
            "transaction_id": "t1",
            "enrolled_criteria": {
                "query_type": "expression",
                "response_entity": "Member",
                "query": {"person_identifier": {"eq": "ABC451123"}},
            },
        },
    }
    contract("ess").validate_request("/registry/sync/check-enrollment", body)


def test_every_registry_profile_has_a_contract():
    from dcihub.standard.profiles import PROFILES

    assert set(REGISTRIES) == set(PROFILES)


def test_core_token_and_jwks_responses_validate():
    spec_dir = require_spec_dir()
    authz = load_core_contract(spec_dir, "authz")
    token = {"access_token": "eyJ...", "token_type": "Bearer", "expires_in": 3600}
    authz.validate_response("/oauth2/client/token", token)
    authz.validate_response("/oauth2/client/token", {**token, "expires_in": "3600"})
    assert authz.errors_response("/oauth2/client/token", {"token_type": "Bearer"})
    form = {"grant_type": "client_credentials", "client_id": "c", "client_secret": "s"}
    authz.validate_request("/oauth2/client/token", form, content_type=FORM)
    assert authz.errors_request("/oauth2/client/token", {"grant_type": "x"}, content_type=FORM)

    jwks = load_core_contract(spec_dir, "jwks")
    key = {
        "kty": "EC",
        "kid": "k1",
        "use": "sig",
        "alg": "ES256",
        "crv": "P-256",
        "x": "..",
        "y": "..",
    }
    jwks.validate_response("/.well-known/jwks.json", {"keys": [key]})
    assert jwks.errors_response("/.well-known/jwks.json", {"keys": [{"kty": "EC"}]})


def test_core_locations_response_validates():
    locations = load_core_contract(require_spec_dir(), "locations")
    body = {
        "@context": {
            "@context": "http://spdci.org/",
            "xsd": "http://www.w3.org/2001/XMLSchema#",
            "schema": "http://schema.org/",
        },
        "@type": "LocationHierarchy",
        "last_updated": TS,
        "locations": [
            {
                "@type": "Place",
                "identifier": [
                    {"@type": "PropertyValue", "name": "crvs-location", "identifier": "L1"}
                ],
                "name": "Karnataka",
                "additional_type": "crvs:STATE",
                "contained_in_place": None,
            }
        ],
    }
    locations.validate_response("/.well-known/locations.json", body)


# --- the loader on synthetic specs: refs through refs, into examples, OAS keywords, cycles ----


def _synthetic_contract(tmp_path: Path, schemas: dict, request_ref: str, response_ref: str):
    operation = {
        "requestBody": {"content": {"application/json": {"schema": {"$ref": request_ref}}}},
        "responses": {
            "default": {
                "description": "reply",
                "content": {"application/json": {"schema": {"$ref": response_ref}}},
            }
        },
    }
    document = {
        "openapi": "3.0.3",
        "info": {"title": "synthetic", "version": "1"},
        "paths": {SYNC_SEARCH: {"post": operation}},
        "components": {"schemas": schemas},
    }
    (tmp_path / "spec").mkdir()
    (tmp_path / "spec" / "social_api_v1.0.0.yaml").write_text(yaml.safe_dump(document))
    return load_contract(tmp_path, "social")


def test_refs_through_refs_and_into_examples_resolve(tmp_path):
    schemas = {
        "Wrapper": {
            "type": "object",
            "properties": {"inner": {"$ref": "#/components/schemas/Inner"}},
        },
        "Inner": {
            "type": "object",
            "properties": {"leaf": {"type": "string", "nullable": True, "format": "date-time"}},
        },
        "Holder": {
            "type": "object",
            "example": {
                "type": "object",
                "required": ["a"],
                "properties": {"a": {"type": "integer", "minimum": 0, "exclusiveMinimum": True}},
            },
        },
    }
    synthetic = _synthetic_contract(
        tmp_path,
        schemas,
        request_ref="#/components/schemas/Wrapper/properties/inner/properties/leaf",
        response_ref="#/components/schemas/Holder/example",
    )
    assert synthetic.errors_request(SYNC_SEARCH, None) == []  # nullable
    assert synthetic.errors_request(SYNC_SEARCH, TS) == []
    assert synthetic.errors_request(SYNC_SEARCH, "yesterday")
    assert synthetic.errors_response(SYNC_SEARCH, {"a": 1}) == []
    assert synthetic.errors_response(SYNC_SEARCH, {"a": 0})  # exclusiveMinimum: true
    assert synthetic.errors_response(SYNC_SEARCH, {})


def test_cyclic_ref_is_reported_not_followed_forever(tmp_path):
    schemas = {
        "Node": {"type": "object", "properties": {"child": {"$ref": "#/components/schemas/Node"}}}
    }
    with pytest.raises(ContractLoadError, match="cyclic"):
        _synthetic_contract(
            tmp_path, schemas, "#/components/schemas/Node", "#/components/schemas/Node"
        )


def test_ref_to_nowhere_is_reported(tmp_path):
    with pytest.raises(ContractLoadError, match="points to nowhere"):
        _synthetic_contract(
            tmp_path, {}, "#/components/schemas/Missing", "#/components/schemas/Missing"
        )


# --- (h) the illustrative samples do not crash the loader ------------------------------------

_SHAPE_TO_PATH = {
    "search_request": "/registry/search",
    "subscribe_request": "/registry/subscribe",
    "subscription_codes": "/registry/unsubscribe",
    "txnstatus_request": "/registry/txn/status",
    "disabled_criteria": "/registry/sync/disabled",
    "enrolled_criteria": "/registry/sync/enrolled",
    "enrolled_updates": "/registry/sync/enrollment/updates",
    "receipt_information": "/registry/sync/enrollment/updates",
}


def _path_implied_by(body) -> str:
    message = body.get("message") if isinstance(body, dict) else None
    for key in message if isinstance(message, dict) else ():
        if key in _SHAPE_TO_PATH:
            return _SHAPE_TO_PATH[key]
    return "/registry/search"


def _sample_requests() -> list[tuple[str, Path]]:
    spec_dir = require_spec_dir()
    return [
        (registry, sample)
        for registry in REGISTRIES
        for sample in sorted((spec_dir / "samples" / registry).glob("processflow*req.json"))
    ]


def test_samples_exist():
    assert len(_sample_requests()) >= 20


@pytest.mark.parametrize("registry", REGISTRIES)
def test_sample_requests_yield_error_lists(registry):
    registry_contract = contract(registry)
    for sample_registry, sample in _sample_requests():
        if sample_registry != registry:
            continue
        body = json.loads(sample.read_text(encoding="utf-8"))
        errors = registry_contract.errors_request(_path_implied_by(body), body)
        assert isinstance(errors, list) and all(isinstance(e, str) for e in errors), sample
