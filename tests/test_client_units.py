"""Unit tests of dcihub.client without a network: query builders (shapes, and meaning checked
against dcihub's own query parser), settings from files / environment / demo, the token
state, lenient reading of results, the envelope core and the errors."""

from __future__ import annotations

import json
import random
from datetime import date
from typing import Any

import orjson
import pytest

from client_support import client_keys
from dcihub.client import (
    ClientSettings,
    ConfigurationError,
    DCIClientError,
    ErrAckError,
    OwnKeys,
    ProtocolError,
    Q,
    Record,
    RejectedError,
    SignatureVerificationError,
)
from dcihub.client.core import ClientCore, sort_items
from dcihub.client.envelopes import open_envelope, read_header
from dcihub.client.errors import AuthenticationError
from dcihub.client.query import Expr
from dcihub.client.results import read_search_item, read_txn_status
from dcihub.client.tokens import TokenState
from dcihub.security.jwe import decrypt_message
from dcihub.security.keys import generate_key, load_jwk
from dcihub.security.signatures import sign, verify
from dcihub.standard.query import All, AnyOf, Compare, Not, parse_query

# ---------------------------------------------------------------------------------------------
# Query builders


def test_idtype_value():
    assert Q.id("UIN", 8462951730).criteria() == {
        "query_type": "idtype-value",
        "query": {"type": "UIN", "value": "8462951730"},
    }


def test_predicate_shapes_and_values():
    query = (
        (Q.attr("birth_date") >= date(1960, 1, 1))
        & (Q.attr("age") < 25)
        & ((Q.attr("poverty_score") <= 2.5) | (Q.attr("sex") == "female"))
        & Q.attr("district").isin(["A", "B"])
        & ~(Q.attr("is_deceased") == True)  # noqa: E712
    )
    criteria = query.criteria()
    assert criteria["query_type"] == "predicate"
    assert criteria["query"] == [
        {
            "seq_num": 1,
            "expression1": {
                "attribute_name": "birth_date",
                "operator": "ge",
                "attribute_value": "1960-01-01",
            },
        },
        {
            "seq_num": 2,
            "expression1": {"attribute_name": "age", "operator": "lt", "attribute_value": "25"},
        },
        {
            "seq_num": 3,
            "expression1": {
                "attribute_name": "poverty_score",
                "operator": "le",
                "attribute_value": "2.5",
            },
            "condition": "or",
            "expression2": {"attribute_name": "sex", "operator": "eq", "attribute_value": "female"},
        },
        {
            "seq_num": 4,
            "expression1": {
                "attribute_name": "district",
                "operator": "in",
                "attribute_value": ["A", "B"],
            },
        },
        {
            "seq_num": 5,
            "expression1": {
                "attribute_name": "birth_date",
                "operator": "ge",
                "attribute_value": "1960-01-01",
            },
            "condition": "not",
            "expression2": {
                "attribute_name": "is_deceased",
                "operator": "eq",
                "attribute_value": True,
            },
        },
    ]


def test_what_a_predicate_list_cannot_say_goes_as_an_expression():
    three = (Q.attr("a") == 1) | (Q.attr("b") == 2) | (Q.attr("c") == 3)
    alone = ~(Q.attr("a") == 1)
    nested = (Q.attr("a") == 1) | ((Q.attr("b") == 2) & (Q.attr("c") > 3))
    not_equal = Q.attr("a") != 1
    for query in (three, alone, nested, not_equal):
        criteria = query.criteria()
        assert criteria["query_type"] == "expression"
        assert criteria["query"]["type"] == "ns:org:QueryType:NoSql"
    assert nested.criteria()["query"]["value"]["expression"]["query"] == {
        "$or": [{"a": {"$eq": "1"}}, {"$and": [{"b": {"$eq": "2"}}, {"c": {"$gt": "3"}}]}]
    }
    assert alone.to_mongo() == {"$not": {"a": {"$eq": "1"}}}


def _evaluate_node(node: Any, row: dict[str, int]) -> bool:
    """Meaning of dcihub's parsed query tree over a row of integers."""
    if isinstance(node, Compare):
        left = row[node.attribute]
        if node.op == "in":
            return left in [int(v) for v in node.value]
        right = int(node.value)
        return {
            "eq": left == right,
            "lt": left < right,
            "le": left <= right,
            "gt": left > right,
            "ge": left >= right,
        }[node.op]
    if isinstance(node, All):
        return all(_evaluate_node(p, row) for p in node.parts)
    if isinstance(node, AnyOf):
        return any(_evaluate_node(p, row) for p in node.parts)
    assert isinstance(node, Not)
    return not _evaluate_node(node.part, row)


def _evaluate_expr(expr: Expr, row: dict[str, int]) -> bool:
    from dcihub.client.query import And, Cond, Or
    from dcihub.client.query import Not as QNot

    if isinstance(expr, Cond):
        value = expr.value
        return _evaluate_node(Compare(expr.attribute, expr.op, value), row)
    if isinstance(expr, And):
        return all(_evaluate_expr(p, row) for p in expr.parts)
    if isinstance(expr, Or):
        return any(_evaluate_expr(p, row) for p in expr.parts)
    assert isinstance(expr, QNot)
    return not _evaluate_expr(expr.part, row)


def _random_expr(rng: random.Random, depth: int = 0) -> Expr:
    if depth >= 2 or rng.random() < 0.35:
        attr = Q.attr(rng.choice("abc"))
        op = rng.choice(["eq", "lt", "le", "gt", "ge", "in"])
        value = rng.randint(0, 4)
        return {
            "eq": lambda: attr == value,
            "lt": lambda: attr < value,
            "le": lambda: attr <= value,
            "gt": lambda: attr > value,
            "ge": lambda: attr >= value,
            "in": lambda: attr.isin([value, (value + 2) % 5]),
        }[op]()
    kind = rng.choice(["and", "or", "not"])
    if kind == "not":
        return ~_random_expr(rng, depth + 1)
    left, right = _random_expr(rng, depth + 1), _random_expr(rng, depth + 1)
    return (left & right) if kind == "and" else (left | right)


def test_every_query_means_what_it_says_to_dcihub():
    """Whatever form is sent (predicate list or expression), dcihub's parser reads a tree
    that is true for exactly the rows the builder's own tree is true for."""
    rng = random.Random(20260101)
    rows = [{k: rng.randint(0, 4) for k in "abc"} for _ in range(60)]
    forms = set()
    for _ in range(300):
        expr = _random_expr(rng)
        criteria = expr.criteria()
        forms.add(criteria["query_type"])
        node = parse_query(criteria["query_type"], criteria["query"]).node
        for row in rows:
            assert _evaluate_node(node, row) == _evaluate_expr(expr, row), criteria
    assert forms == {"predicate", "expression"}


def test_query_mistakes_are_explained():
    with pytest.raises(TypeError, match="combine conditions with &"):
        bool(Q.attr("a") == 1)
    with pytest.raises(TypeError, match="chained comparison"):
        "1960" <= Q.attr("birth_date") <= "1970"  # noqa: B015
    with pytest.raises(TypeError, match="None"):
        Q.attr("death_date") == None  # noqa: B015, E711
    with pytest.raises(TypeError, match="not dict"):
        Q.attr("a") == {"x": 1}  # noqa: B015
    with pytest.raises(ValueError, match="at least one value"):
        Q.attr("a").isin([])
    with pytest.raises(ValueError):
        Q.id("", "1")


def test_raw_and_expression_queries():
    assert Q.raw("graphql", "{ person }").criteria() == {
        "query_type": "graphql",
        "query": "{ person }",
    }
    doc = {"$and": [{"poverty_score": {"$lt": 5}}]}
    assert Q.expression(doc, collection="Group").criteria()["query"]["value"]["expression"] == {
        "query": doc,
        "collection": "Group",
    }
    assert Q.all(Q.attr("a") == 1).criteria()["query_type"] == "predicate"


def test_sort_forms():
    assert sort_items("-birth_date") == [{"attribute_name": "birth_date", "sort_order": "desc"}]
    assert sort_items(["name", ("age", "desc")]) == [
        {"attribute_name": "name", "sort_order": "asc"},
        {"attribute_name": "age", "sort_order": "desc"},
    ]
    with pytest.raises(ConfigurationError):
        sort_items([("age", "sideways")])  # type: ignore[list-item]


# ---------------------------------------------------------------------------------------------
# Settings


def test_settings_from_a_file_the_environment_and_flags(tmp_path):
    keys = client_keys()
    (tmp_path / "keys.json").write_text(json.dumps(keys))
    (tmp_path / "crvs.yaml").write_text(
        "base_url: https://registry.example.org/crvs/\n"
        "sender_id: spmis.example.org\n"
        "token: abc\n"
        "keys_file: keys.json\n"
        "jwks_url: https://registry.example.org/.well-known/jwks.json\n"
    )
    settings = ClientSettings.from_file(tmp_path / "crvs.yaml")
    assert settings.base_url == "https://registry.example.org/crvs"
    assert settings.registry == "crvs"  # guessed from the URL
    assert settings.keys_file == tmp_path / "keys.json" and settings.private_jwks() == keys
    assert "abc" not in repr(settings)  # secrets are not shown
    env = {
        "DCIHUB_CLIENT_BASE_URL": "http://h/dr",
        "DCIHUB_CLIENT_SENDER_ID": "s",
        "DCIHUB_CLIENT_ENCRYPT": "true",
    }
    from_env = ClientSettings.from_env(env)
    assert from_env.encrypt is True and from_env.registry == "dr"
    flagged = settings.merged(encrypt=True, timeout=None, signature_profile="jws-compact")
    assert flagged.encrypt and flagged.timeout == 30 and flagged.signature_profile == "jws-compact"
    assert flagged.token is not None and flagged.token.get_secret_value() == "abc"


def test_settings_mistakes_in_one_line(tmp_path):
    with pytest.raises(ConfigurationError) as caught:
        ClientSettings.build({"base_url": "ftp://x", "sender_id": "s", "nonsense": 1})
    text = str(caught.value)
    assert "\n" not in text and "base_url" in text and "nonsense" in text
    with pytest.raises(ConfigurationError, match="run `dcihub demo` first"):
        ClientSettings.from_demo("crvs", tmp_path / "missing" / "demo.json")
    with pytest.raises(ConfigurationError, match="DCIHUB_CLIENT_KEYS is not JSON"):
        ClientSettings.from_env({"DCIHUB_CLIENT_KEYS": "{oops"})
    (tmp_path / "bad.yaml").write_text("base_url: [unclosed\n")
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        ClientSettings.from_file(tmp_path / "bad.yaml")


# ---------------------------------------------------------------------------------------------
# Tokens


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _token_state(**overrides: Any) -> tuple[TokenState, Clock]:
    clock = Clock()
    settings = ClientSettings.build(
        {
            "base_url": "http://r/crvs",
            "sender_id": "s",
            "token_url": "http://r/oauth2/client/token",
            "client_id": "c",
            "client_secret": "x",
            **overrides,
        }
    )
    return TokenState(settings, now=clock), clock


def test_token_is_renewed_before_it_expires():
    state, clock = _token_state()
    assert state.current() is None
    request = state.request()
    assert request.form == {
        "grant_type": "client_credentials",
        "client_id": "c",
        "client_secret": "x",
    }
    state.accept(200, b'{"access_token": "t1", "token_type": "bearer", "expires_in": "300"}')
    assert state.current() == "t1"
    clock.t += 269
    assert state.current() == "t1"
    clock.t += 2  # within the 30 s leeway of its expiry
    assert state.current() is None
    state.accept(200, b'{"access_token": "t2", "expires_in": 40}')  # short: renewed half-way
    clock.t += 21
    assert state.current() is None
    state.invalidate()
    assert state.current() is None


def test_token_endpoint_answers_that_are_refused():
    state, _ = _token_state()
    with pytest.raises(AuthenticationError, match="invalid_client|wrong"):
        state.accept(401, b'{"error": "invalid_client", "error_description": "wrong secret"}')
    with pytest.raises(AuthenticationError, match="without an access_token"):
        state.accept(200, b'{"token_type": "bearer"}')
    with pytest.raises(AuthenticationError, match="expires_in"):
        state.accept(200, b'{"access_token": "t", "expires_in": "soon"}')
    with pytest.raises(ConfigurationError, match="client_secret"):
        _token_state(client_secret=None)
    fixed, _ = _token_state(token="fixed", token_url=None, client_id=None, client_secret=None)
    assert fixed.current() == "fixed" and not fixed.can_refresh


# ---------------------------------------------------------------------------------------------
# Reading results


def test_common_fields_of_records_wherever_registries_keep_them():
    dr = Record(
        {
            "personal_details": {
                "member_identifier": [{"identifier_type": "UIN", "identifier_value": "1"}],
                "demographic_info": {
                    "name": {"given_name": "A", "surname": "B"},
                    "birth_date": "1970-01-02",
                },
            }
        }
    )
    assert dr.uin == "1" and dr.name.full == "A B" and dr.birth_date == "1970-01-02"  # type: ignore[union-attr]
    ibr = Record(
        {
            "member": {
                "member_identifier": [{"identifier_type": "NationalID", "identifier_value": "2"}],
                "demographic_info": {"sex": "male"},
            }
        }
    )
    assert ibr.uin == "2" and ibr.sex == "male" and not ibr.is_deceased
    legacy = Record(
        {"person": {"identifier": [{"type": "NID", "value": 3}], "date_of_death": "2020-01-01"}}
    )
    assert legacy.uin == "3" and legacy.is_deceased and legacy.death_date == "2020-01-01"
    assert Record({"name": "Kofi"}).name.full == "Kofi"  # type: ignore[union-attr]
    assert Record({"a": {"b": [{"c": 5}]}}).get("a.b.c") == 5


def test_lenient_search_items_and_what_is_not_accepted():
    item = {
        "reference_id": "r",
        "timestamp": "2026-01-01T00:00:00Z",
        "status": "succ",
        "data": {"reg_event_type": "Person", "reg_records": {"identifier": []}},
        "pagination": {"page_size": "10", "page_number": 1, "total_count": "12"},
    }
    result = read_search_item(item, "message.search_response[0]", "t", "c")
    assert result.total_count == 12 and result.page_size == 10 and len(result.records) == 1
    assert result.reg_record_type == "Person"
    item["data"]["reg_records"] = "three records"
    with pytest.raises(ProtocolError) as caught:
        read_search_item(item, "message.search_response[0]", "t", "c")
    assert "message.search_response[0].data.reg_records is the string 'three records'" in str(
        caught.value
    )
    item["data"]["reg_records"] = []
    item["pagination"] = {"total_count": "many"}
    with pytest.raises(ProtocolError, match="pagination.total_count is 'many'"):
        read_search_item(item, "message.search_response[0]", "t", "c")
    with pytest.raises(ProtocolError, match="none of search_response"):
        read_txn_status(
            {"transaction_id": "t", "txnstatus_response": {"txn_type": "search", "txn_status": {}}}
        )


# ---------------------------------------------------------------------------------------------
# The envelope core


def _core(**overrides: Any) -> ClientCore:
    keys = client_keys()
    keys["keys"].append(generate_key("sig", "EdDSA").as_dict(private=True))
    settings = ClientSettings.build(
        {
            "base_url": "http://r/crvs",
            "sender_id": "spmis.x",
            "receiver_id": "crvs.node",
            "token": "t",
            "keys": keys,
            "registry_jwks": {"keys": []},
            **overrides,
        }
    )
    return ClientCore(settings, OwnKeys(settings.private_jwks()))


@pytest.mark.parametrize("profile", ["jws-detached", "jws-compact", "http-sig-ed25519"])
def test_sealed_requests_verify(profile):
    core = _core(signature_profile=profile)
    plan = core.plan_search(Q.id("UIN", "1"), page_size=5)
    envelope = orjson.loads(core.seal(plan))
    header = envelope["header"]
    assert header["receiver_id"] == "crvs.node" and header["total_count"] == 1
    assert header["message_id"] != envelope["message"]["transaction_id"]
    public = {k.kid: k for k in core.keys.signing}
    verified = verify(
        envelope["signature"], header, envelope["message"], lambda kid, alg: public.get(kid)
    )
    assert verified.profile == profile


def test_encrypt_then_sign():
    core = _core(encrypt=True)
    registry_enc = generate_key("enc", "ECDH-ES+A256KW")
    plan = core.plan_search(Q.id("UIN", "1"))
    envelope = orjson.loads(core.seal(plan, registry_enc))
    assert envelope["header"]["is_msg_encrypted"] is True
    assert decrypt_message(envelope["message"], lambda kid: registry_enc) == plan.message
    public = {k.kid: k for k in core.keys.signing}
    verify(
        envelope["signature"],
        envelope["header"],
        envelope["message"],
        lambda kid, alg: public.get(kid),
    )


def test_opening_replies():
    core = _core()
    registry = generate_key("sig", "ES256")
    resolve = lambda kid, alg: registry if kid == registry.kid else None  # noqa: E731
    header = {
        "version": "1.0.0",
        "message_id": "m",
        "message_ts": "2026-01-01T00:00:00Z",
        "action": "search",  # older samples answer `search`
        "status": "succ",
        "total_count": "1",
    }
    message = {"transaction_id": "t"}
    signed = {"signature": sign(header, message, registry), "header": header, "message": message}
    opened = open_envelope(
        signed, expected_action="on-search", resolve=resolve, keys=core.keys, require_signature=True
    )
    assert opened.signed_by == f"jws-detached:{registry.kid}" and opened.header["total_count"] == 1
    with pytest.raises(ProtocolError, match="expected 'txn-on-status'"):
        read_header(header, "txn-on-status")
    with pytest.raises(ProtocolError, match="version"):
        read_header({**header, "version": "2.0.0"}, "on-search")
    tampered = {**signed, "message": {"transaction_id": "other"}}
    with pytest.raises(SignatureVerificationError):
        open_envelope(
            tampered,
            expected_action="on-search",
            resolve=resolve,
            keys=core.keys,
            require_signature=True,
        )


def test_http_answers_that_are_errors():
    core = _core()
    plan = core.plan_search(Q.id("UIN", "1"))
    err = b'{"message": {"ack_status": "ERR", "timestamp": "t", "correlation_id": "c", "error": {"code": "err.request.bad", "message": "no"}}}'
    with pytest.raises(ErrAckError) as caught:
        core.parse_reply(plan, 400, err)
    assert (
        caught.value.transaction_id == plan.transaction_id
        and caught.value.message_id == plan.message_id
    )
    with pytest.raises(ErrAckError, match="err.request.forbidden"):
        core.parse_reply(
            plan, 403, b'{"errors": [{"code": "err.request.forbidden", "message": "no"}]}'
        )
    with pytest.raises(DCIClientError, match="HTTP 500 without a DCI answer"):
        core.parse_reply(plan, 500, b"Internal Server Error")
    with pytest.raises(ProtocolError, match="an ACK ack"):
        core.parse_reply(
            plan,
            202,
            b'{"message": {"ack_status": "ACK", "timestamp": "t", "correlation_id": "c"}}',
        )


def test_client_keys_mistakes():
    public = {"keys": [load_jwk(generate_key("sig", "ES256").as_dict()).as_dict(private=False)]}
    with pytest.raises(ConfigurationError, match="public key"):
        OwnKeys(public)
    with pytest.raises(ConfigurationError, match="Ed25519"):
        OwnKeys(client_keys()).signing_key("http-sig-ed25519")
    with pytest.raises(ConfigurationError, match="no signing key"):
        OwnKeys(None).signing_key("jws-detached")
    with pytest.raises(ConfigurationError, match="decryption key"):
        ClientCore(
            ClientSettings.build(
                {"base_url": "http://r", "sender_id": "s", "encrypt": True, "sign": False}
            ),
            OwnKeys(None),
        )


def test_errors_are_one_line_with_their_ids():
    error = RejectedError(
        "rjct.search_criteria.invalid",
        "bad\nthing",
        reference_id="r1",
        transaction_id="t1",
        message_id="m1",
    )
    assert str(error) == (
        "the registry rejected item r1: rjct.search_criteria.invalid: bad thing [transaction t1, message m1]"
    )
    assert error.reason_message == "bad\nthing" and error.transaction_id == "t1"


def test_the_client_imports_only_the_standard_and_the_security_layer():
    """DESIGN.md: client/ may import standard/ and security/, never server/ or store/."""
    import ast
    from pathlib import Path

    import dcihub.client

    package = Path(dcihub.client.__file__).parent
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 1, f"{path.name} imports from outside client/"
                continue
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.startswith("dcihub"):
                    assert name.startswith(("dcihub.standard", "dcihub.security")), (
                        f"{path.name} imports {name}"
                    )


def test_a_message_that_cannot_be_sent():
    core = _core()
    plan = core.call_plan("sync/anything", {"when": object()}, action="search")
    with pytest.raises(ConfigurationError, match="cannot be sent"):
        core.seal(plan)
