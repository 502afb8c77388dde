"""Fuzzing every DCI endpoint of every registry on a live server (docs/reliability.md).

Two generators, both with a fixed seed (hypothesis `derandomize`) and a bounded number of
examples, so that a run is repeatable and quick; `DCIHUB_FUZZ_EXAMPLES` (default 2) scales
every count and makes a long run (docs/reliability.md). Per operation on SQLite: that many
schemathesis cases from dcihub's document, half as many from each contract, three times as
many mutations; PostgreSQL runs a third of each (at least one):

* **schemathesis** generates request bodies from two OpenAPI documents: dcihub's own
  (`/openapi.json` of the live node) and the official contract of each registry (loaded with
  the patches of `tests/contract.py`). Each body is sent twice: as generated, and *steered* —
  its header given the partner's `sender_id`, a fresh `message_id` and `message_ts`, the
  endpoint's action — so that it passes the header checks and reaches the handlers.
* **hypothesis mutations** of a valid envelope of each endpoint (the worked example of
  dcihub's OpenAPI document): one to three members replaced by a value of another type, null,
  a huge number, deep nesting, unicode, NUL bytes, a long string, or removed, or added to; in
  clear, after signing (the signature itself, or what it covers), before encryption (wrong
  only once decrypted), in the EncryptedMessage; a member repeated in the JSON text; the body
  cut short, a byte changed, random bytes.

Every body is sent with the partner's access token, and every one that parses as an envelope
is signed with the partner's key, so the fuzzing reaches the handlers, not only the
authentication step. Asserted for each: an answer within the per-request timeout, never a 5xx,
and every refusal a DCI error body (an ERR ack with an `err.*` code, an HttpErrorResponse with
one, or a response envelope whose header is `rjct` with a reason code).
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import DCIClient, LiveServer, live_server, now_ts, store_url_for
from support import test_settings as node_settings

schemathesis = pytest.importorskip("schemathesis")

# schemathesis' strategies use the `random` module, which hypothesis deprecates (their concern)
pytestmark = pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")

EXAMPLES = max(1, int(os.environ.get("DCIHUB_FUZZ_EXAMPLES", "2")))
REQUEST_TIMEOUT = 20.0  # seconds; past it the server is taken to hang
REGISTRIES = ("social", "crvs", "dr", "fr", "ibr", "ess")
FUZZ_PEOPLE = 200

STATS: Counter[str] = Counter()


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )


# ---------------------------------------------------------------------------------------------
# the node under fuzzing


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fuzz_node(request, tmp_path_factory):
    from dcihub.population.generator import generate_country
    from dcihub.population.load import load_country
    from dcihub.store import Store

    with store_url_for(request.param, tmp_path_factory.mktemp("fuzz")) as url:
        store = Store(url)
        store.upgrade()
        load_country(store, generate_country(people=FUZZ_PEOPLE, seed=11))
        settings_ = node_settings(url, data_dir=tmp_path_factory.mktemp("fuzz-node"))
        running = live_server(settings_, store)
        running.backend = request.param  # type: ignore[attr-defined]
        try:
            yield running
        finally:
            running.stop()
            store.dispose()
            if STATS:
                print(f"\nfuzz ({request.param}): {dict(sorted(STATS.items()))}")
                STATS.clear()


@pytest.fixture(scope="module")
def fuzzer(fuzz_node):
    client = DCIClient(fuzz_node, fuzz_node.partner)
    client.http = httpx.Client(timeout=REQUEST_TIMEOUT)
    yield Fuzzer(fuzz_node, client)
    client.http.close()


def examples_for(backend: str, share: float = 1.0) -> int:
    """Examples per operation: `EXAMPLES` times `share`; PostgreSQL runs a third of them (the
    same code paths over a slower store)."""
    examples = EXAMPLES * share if backend == "sqlite" else EXAMPLES * share / 3
    return max(1, int(examples))


# ---------------------------------------------------------------------------------------------
# sending and judging


class Fuzzer:
    def __init__(self, node: LiveServer, client: DCIClient) -> None:
        self.node = node
        self.client = client

    def steer(self, body: Any, action: str) -> Any:
        """The body with a header that passes the header checks (when it has a header)."""
        if not isinstance(body, dict) or not isinstance(body.get("header"), dict):
            return body
        header = dict(body["header"])
        header.update(
            sender_id=self.client.sender_id,
            message_id=f"fz-{uuid.uuid4().hex}",
            message_ts=now_ts(),
            action=action,
        )
        header.pop("receiver_id", None)
        steered = {k: v for k, v in body.items() if k != "signature"}
        steered["header"] = header
        return steered

    def send(self, registry: str, path: str, raw: bytes) -> httpx.Response:
        try:
            response = self.client.post_raw(registry, path, raw)
        except httpx.TimeoutException:
            pytest.fail(
                f"{registry}/{path}: no answer within {REQUEST_TIMEOUT:g} s to {raw[:400]!r}"
            )
        STATS["cases"] += 1
        STATS[f"http {response.status_code}"] += 1
        check_answer(response, f"{registry}/{path}", raw)
        if response.status_code >= 400:
            STATS[str(dci_error_code(response.json()))] += 1
        return response


def encode(body: Any) -> bytes:
    try:
        return orjson.dumps(body)
    except TypeError:  # not representable by orjson (e.g. an integer past 64 bits)
        import json

        return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")


def check_answer(response: httpx.Response, where: str, sent: bytes) -> None:
    shown = f"{where}: sent {sent[:600]!r}\nanswered {response.status_code}: {response.text[:600]}"
    assert response.status_code < 500, shown
    assert response.headers.get("content-type", "").startswith("application/json"), shown
    try:
        body = response.json()
    except ValueError:
        pytest.fail(f"the answer is not JSON: {shown}")
    if response.status_code < 400:
        assert isinstance(body, dict) and ("message" in body or "header" in body), shown
        return
    assert dci_error_code(body), f"the refusal is not a DCI error body: {shown}"


def dci_error_code(body: Any) -> str | None:
    """The DCI code a refusal carries, or None if it is not a DCI error body."""
    if not isinstance(body, dict):
        return None
    message = body.get("message")
    if isinstance(message, dict) and message.get("ack_status") == "ERR":
        error = message.get("error")
        code = error.get("code") if isinstance(error, dict) else None
        if isinstance(code, str) and code.startswith("err."):
            return code
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        code = errors[0].get("code")
        if isinstance(code, str) and code.startswith("err."):
            return code
    header = body.get("header")
    if isinstance(header, dict) and header.get("status") == "rjct":
        code = header.get("status_reason_code")
        if isinstance(code, str) and code.startswith("rjct."):
            return code
    return None


# ---------------------------------------------------------------------------------------------
# the OpenAPI documents


def dcihub_document(node: LiveServer) -> dict[str, Any]:
    response = httpx.get(f"{node.base_url}/openapi.json", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def contract_document(spec_dir: Any, registry: str) -> dict[str, Any]:
    from contract import load_contract

    contract = load_contract(spec_dir, registry)
    # dereferenced and in JSON Schema form (tests/contract.py): OpenAPI 3.1's schema dialect
    return {
        "openapi": "3.1.0",
        "info": {"title": f"DCI {registry}", "version": "1.0.0"},
        "paths": contract._paths,
    }


def dci_operations(document: dict[str, Any], registry: str | None) -> list[Any]:
    """(registry, path after /registry/, schemathesis operation) of every DCI endpoint."""
    schema = schemathesis.openapi.from_dict(document)
    found = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.method.lower() != "post" or "/registry/" not in operation.path:
            continue
        prefix, _, path = operation.path.partition("/registry/")
        name = registry or prefix.strip("/")
        if name in REGISTRIES:
            found.append((name, path, operation))
    return found


def endpoint_actions(node: LiveServer) -> dict[tuple[str, str], str]:
    from dcihub.server.node import endpoints_for
    from dcihub.standard.profiles import PROFILES

    return {
        (name, spec.path): spec.action
        for name in REGISTRIES
        for spec in endpoints_for(PROFILES[name])
    }


def fuzz_one(
    fuzzer: Fuzzer, registry: str, path: str, action: str, operation: Any, examples: int
) -> None:
    @fuzz_settings(examples)
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        body = case.body
        fuzzer.send(registry, path, encode(body))
        fuzzer.send(registry, path, encode(fuzzer.steer(body, action)))

    run()


def fuzz_operations(fuzzer: Fuzzer, operations: list[Any], examples: int) -> int:
    actions = endpoint_actions(fuzzer.node)
    served = 0
    for registry, path, operation in operations:
        action = actions.get((registry, path))
        if action is None:  # in the contract, not served: answered 404 with an ERR ack
            action = path.rsplit("/", 1)[-1]
        else:
            served += 1

        fuzz_one(fuzzer, registry, path, action, operation, examples)
    return served


def test_fuzz_dcihub_openapi(fuzz_node, fuzzer):
    operations = dci_operations(dcihub_document(fuzz_node), None)
    assert {name for name, _, _ in operations} == set(REGISTRIES)
    served = fuzz_operations(fuzzer, operations, examples_for(fuzz_node.backend))
    assert served == len(endpoint_actions(fuzz_node))  # every served endpoint was fuzzed


@pytest.mark.parametrize("registry", REGISTRIES)
def test_fuzz_official_contract(fuzz_node, fuzzer, spec_dir, registry):
    operations = dci_operations(contract_document(spec_dir, registry), registry)
    assert operations, f"no DCI operation found in the {registry} contract"
    fuzz_operations(fuzzer, operations, examples_for(fuzz_node.backend, 0.5))


# ---------------------------------------------------------------------------------------------
# mutations of valid envelopes

SAFE = 2**53 - 1  # the largest integer a signature covers (RFC 8785 canonical JSON)
HUGE_NUMBERS = [
    SAFE,
    -SAFE,
    10**15,
    2**31,
    2**63,  # past what can be signed: answered at the signature step
    1e308,
    -1e308,
    5e-324,
    0.1,
    -1,
    0,
]
ODD_TEXT = [
    "",
    "\x00",
    "a\x00b",
    "\ud7ff\ue000\U0010ffff",
    "é" * 5000,
    "x" * 200_000,
    "𝔇𝔆𝔍 ✓ 🙂",
    "'; DROP TABLE outbox; --",
    "../../etc/passwd",
    "%00%ff",
    "2026-13-45T25:61:61Z",
    "NaN",
    "{}",
]


def deep(depth: int, kind: str) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value] if kind == "list" else {"d": value}
    return value


odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(HUGE_NUMBERS),
    st.integers(min_value=-SAFE, max_value=SAFE),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(ODD_TEXT),
    st.text(max_size=40),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.builds(deep, st.sampled_from([10, 63, 70, 500]), st.sampled_from(["list", "dict"])),
)


def paths_in(value: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every member path of a JSON document (the root excluded)."""
    found: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for key, child in value.items():
            found.append((*here, key))
            found.extend(paths_in(child, (*here, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found.append((*here, index))
            found.extend(paths_in(child, (*here, index)))
    return found


def mutate(document: Any, path: tuple[Any, ...], how: str, value: Any) -> Any:
    import copy

    document = copy.deepcopy(document)
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if how == "replace":
        parent[last] = value
    elif how == "remove":
        del parent[last]
    elif how == "add" and isinstance(parent[last], dict):
        parent[last]["fz_extra\x00" if isinstance(value, bool) else "fz_extra"] = value
    elif how == "add" and isinstance(parent[last], list):
        parent[last].append(value)
    else:
        parent[last] = value
    return document


def duplicate_member(raw: bytes, member: bytes) -> bytes:
    """The JSON text with `"member": …` written twice in its object (the first occurrence)."""
    return raw.replace(b'"' + member + b'":', b'"' + member + b'":"twice","' + member + b'":', 1)


def valid_envelopes(node: LiveServer) -> dict[tuple[str, str], dict[str, Any]]:
    document = dcihub_document(node)
    out = {}
    for path, item in document["paths"].items():
        operation = item.get("post") or {}
        content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
        if "/registry/" in path and "example" in content:
            registry, _, endpoint = path.strip("/").partition("/registry/")
            out[(registry, endpoint)] = content["example"]
    return out


def test_valid_envelopes_are_answered(fuzz_node, fuzzer):
    """The envelopes the mutations start from are valid: each is answered without a refusal
    (else the mutations would only ever test a refusal of the original)."""
    envelopes = valid_envelopes(fuzz_node)
    assert set(envelopes) == set(endpoint_actions(fuzz_node))
    for (registry, path), envelope in sorted(envelopes.items()):
        steered = fuzzer.steer(envelope, envelope["header"]["action"])
        response = fuzzer.send(registry, path, encode(steered))
        assert response.status_code in (200, 202), (registry, path, response.text)


def node_encryption_key(node: LiveServer) -> dict[str, Any]:
    jwks = httpx.get(f"{node.base_url}/.well-known/jwks.json", timeout=30).json()
    return next(k for k in jwks["keys"] if k.get("use") == "enc")


mutation_kinds = st.sampled_from(["replace", "replace", "remove", "add"])


def mutated(data: st.DataObject, document: Any, label: str) -> Any:
    """`document` with one to three members replaced, removed or added to."""
    for round_ in range(data.draw(st.integers(1, 3), label=f"{label} mutations")):
        paths = paths_in(document)
        if not paths:
            break
        target = data.draw(st.sampled_from(paths), label=f"{label} member {round_}")
        how = data.draw(mutation_kinds, label=f"{label} how {round_}")
        document = mutate(document, target, how, data.draw(odd_values, label=f"value {round_}"))
    return document


@pytest.mark.parametrize("registry", REGISTRIES)
def test_fuzz_mutated_envelopes(fuzz_node, fuzzer, registry):
    """Mutations of each endpoint's valid envelope, sent signed: in clear; mutated, then
    encrypted to the node's key (the message is wrong only once decrypted); encrypted, then
    its EncryptedMessage mutated; or with a member repeated in the JSON text."""
    from dcihub.security.errors import EncryptionError
    from dcihub.security.jwe import encrypt_message

    envelopes = {k: v for k, v in valid_envelopes(fuzz_node).items() if k[0] == registry}
    assert envelopes
    keys = sorted(envelopes)
    recipient = node_encryption_key(fuzz_node)

    @fuzz_settings(examples_for(fuzz_node.backend, 3) * len(keys))
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        registry_, path = data.draw(st.sampled_from(keys), label="endpoint")
        envelope = envelopes[(registry_, path)]
        steered = fuzzer.steer(envelope, envelope["header"]["action"])
        layer = data.draw(
            st.sampled_from(
                ["clear", "clear", "signed", "then encrypted", "encrypted", "twice", "bytes"]
            ),
            label="layer",
        )
        if layer == "bytes":  # the signed body cut short, a byte changed, or bytes at random
            raw = fuzzer.client._sign_raw(encode(steered))
            how = data.draw(st.sampled_from(["cut", "flip", "random"]), label="bytes")
            if how == "random":
                raw = data.draw(st.binary(max_size=300), label="random bytes")
            else:
                at = data.draw(st.integers(0, len(raw) - 1), label="at")
                raw = (
                    raw[:at] if how == "cut" else raw[:at] + bytes([raw[at] ^ 0x5A]) + raw[at + 1 :]
                )
            fuzzer.send(registry_, path, raw)
            return
        if layer == "signed":  # signed first: the mutation spoils the signature or is it
            signed = fuzzer.client.signed(steered)
            fuzzer.send(registry_, path, encode(mutated(data, signed, "signed envelope")))
            return
        if layer == "twice":
            target = data.draw(st.sampled_from(paths_in(steered)), label="member")
            member = target[-1] if isinstance(target[-1], str) else "header"
            raw = duplicate_member(fuzzer.client._sign_raw(encode(steered)), member.encode())
            fuzzer.send(registry_, path, raw)
            return
        if layer == "clear":
            body = mutated(data, steered, "envelope")
        else:
            header = {**steered["header"], "is_msg_encrypted": True}
            message = steered["message"]
            if layer == "then encrypted":
                message = mutated(data, {"m": message}, "message").get("m")
                try:
                    sealed = encrypt_message(message, recipient)
                except EncryptionError:  # not JSON (past 64-bit integers, 255 levels deep)
                    return
            else:
                sealed = mutated(data, encrypt_message(message, recipient), "jwe")
            body = {"header": header, "message": sealed}
        fuzzer.send(registry_, path, encode(body))

    run()


# ---------------------------------------------------------------------------------------------
# regressions found by the fuzzing


def test_every_text_member_with_nul_or_past_its_column_is_answered(fuzz_node, fuzzer):
    """Each text member of each kind of endpoint's valid envelope, with a NUL appended or
    300 characters long, is answered without a 5xx. On PostgreSQL the rejected items' reference
    ids and the reasons quoting the bad value (query_type, event types, frequencies) once made
    the transaction's writes fail (503): a rejected item is now recorded in a form every store
    holds (`store.transactions.storable`)."""
    envelopes = valid_envelopes(fuzz_node)
    kinds: dict[str, tuple[str, str]] = {}
    for registry, path in sorted(envelopes):  # one registry per endpoint kind
        kinds.setdefault(path, (registry, path))
    answered = Counter()
    for registry, path in kinds.values():
        envelope = envelopes[(registry, path)]
        for target in paths_in(envelope["message"]):
            parent = envelope["message"]
            for step in target[:-1]:
                parent = parent[step]
            value = parent[target[-1]]
            if not isinstance(value, str):
                continue
            for bad in (value + "\x00", "x" * 300):
                steered = fuzzer.steer(envelope, envelope["header"]["action"])
                body = mutate(steered, ("message", *target), "replace", bad)
                answered[fuzzer.send(registry, path, encode(body)).status_code] += 1
    assert answered and max(answered) < 500, answered


def test_storable_escapes_control_characters_and_cuts_to_the_column():
    from dcihub.store.transactions import storable

    assert storable("a\x00b\x1fc\x7fd\te\nf") == "a\\x00b\\x1fc\\x7fd\te\nf"
    assert storable("é" * 300, 100) == "é" * 100
    assert storable("plain id", 100) == "plain id"
    assert storable(None, 8) is None
