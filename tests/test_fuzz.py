"""Fuzzing every DCI endpoint of every registry on a live server (docs/reliability.md).

Two generators, both with a fixed seed (hypothesis `derandomize`) and a bounded number of
examples, so that a run is repeatable and quick; `DCIHUB_FUZZ_EXAMPLES` (examples per
operation, default 3) makes a long run:

* **schemathesis** generates request bodies from two OpenAPI documents: dcihub's own
  (`/openapi.json` of the live node) and the official contract of each registry (loaded with
  the patches of `tests/contract.py`). Each body is sent twice: as generated, and *steered* —
  its header given the partner's `sender_id`, a fresh `message_id` and `message_ts`, the
  endpoint's action — so that it passes the header checks and reaches the handlers.
* **hypothesis mutations** of a valid envelope of each endpoint (the worked example of
  dcihub's OpenAPI document): a member replaced by a value of another type, null, a huge
  number, deep nesting, unicode, NUL bytes, a long string; a member removed or added; a
  member repeated in the JSON text.

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

from support import DCIClient, LiveServer, live_server, now_ts, store_url_for, test_settings

schemathesis = pytest.importorskip("schemathesis")

EXAMPLES = max(1, int(os.environ.get("DCIHUB_FUZZ_EXAMPLES", "3")))
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
        settings_ = test_settings(url, data_dir=tmp_path_factory.mktemp("fuzz-node"))
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


def examples_for(backend: str) -> int:
    """PostgreSQL runs a smaller share of the cases (the same code paths, a slower store)."""
    return EXAMPLES if backend == "sqlite" else max(1, EXAMPLES // 3)


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
    fuzz_operations(fuzzer, operations, examples_for(fuzz_node.backend))


# ---------------------------------------------------------------------------------------------
# mutations of valid envelopes

HUGE_NUMBERS = [
    2**63,
    -(2**63) - 1,
    10**30,
    1e308,
    -1e308,
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
    st.integers(),
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


@pytest.mark.parametrize("registry", REGISTRIES)
def test_fuzz_mutated_envelopes(fuzz_node, fuzzer, registry):
    envelopes = {k: v for k, v in valid_envelopes(fuzz_node).items() if k[0] == registry}
    assert envelopes
    keys = sorted(envelopes)

    @fuzz_settings(examples_for(fuzz_node.backend) * 6 * len(keys))
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        registry_, path = data.draw(st.sampled_from(keys), label="endpoint")
        envelope = envelopes[(registry_, path)]
        steered = fuzzer.steer(envelope, envelope["header"]["action"])
        target = data.draw(st.sampled_from(paths_in(steered)), label="member")
        how = data.draw(st.sampled_from(["replace", "replace", "remove", "add", "twice"]))
        if how == "twice":
            member = target[-1] if isinstance(target[-1], str) else "header"
            raw = duplicate_member(fuzzer.client._sign_raw(encode(steered)), member.encode())
            fuzzer.send(registry_, path, raw)
            return
        mutated = mutate(steered, target, how, data.draw(odd_values, label="value"))
        fuzzer.send(registry_, path, encode(mutated))

    run()
