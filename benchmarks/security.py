"""The security benchmark of dcihub (benchmarks/README.md, "The security benchmark").

One secured `dcihub serve` process (security on, as a deployment runs it: access tokens, replay
protection, audit trail) over the demo population; one partner allowed to send unsigned requests
and to get unsigned replies to them (`allow_unsigned: true`, `sign_replies: false`). In the same
run, against that process, the same sync `idtype-value` UIN search is measured three ways:

    unsigned    no request signature and no reply signature (the baseline of issue 3, "Speed")
    signed      request signed (jws-detached, ES256, the partner's key); reply signed
    encrypted   request message encrypted to the node's ECDH-ES+A256KW key, then signed
                (encrypt-then-sign); the reply encrypted back to the partner, then signed

and, for reference (no target; `--no-reference` leaves it out), a fourth way from a second
partner that keeps the default `sign_replies: true`:

    reply-only  no request signature; the reply signed (what the baseline was before partners
                could ask for unsigned replies)

Every request body is unique (its own message_id, so the replay protection never answers from
memory) and made before the load starts, in a process pool, so that signing and encrypting never
limit the load generator. Prints requests/s, the ratios signed/unsigned (target >= 0.70) and
encrypted/unsigned (>= 0.50) with PASS/FAIL, p50/p99 latencies, the per-operation costs measured
in this process, and where the server's time goes; writes benchmarks/results/security-*.json.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from harness.closed_loop import ClosedLoopSettings, Throughput, run_wrk, wrk_binary
from harness.machine import in_workdir, process_group_cpu_seconds, run_main, say, warn_if_busy
from harness.open_loop import LatencyAtRate, OpenLoopSettings, latency_at_rate
from harness.processes import BenchmarkError, ChildProcesses
from harness.report import (
    FAIL,
    INFO,
    PASS,
    UNSURE,
    Row,
    describe_latency,
    describe_throughput,
    environment,
    table,
    write_results,
)
from harness.requests import RequestFiles, lookup_item, search_envelope
from harness.servers import DcihubOptions, Server, prepare_population, start_dcihub

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
REGISTRY = "crvs"
PATH = f"/{REGISTRY}/registry/sync/search"
SENDER = "spmis.bench"  # the partner of the three measured scenarios: sign_replies false
CLIENT_ID = "spmis-bench"
REF_SENDER = "spmis.bench.ref"  # the reference scenario's partner: sign_replies true (default)
REF_CLIENT_ID = "spmis-bench-ref"

# Security on, with the defaults a deployment has (tokens, replay window, clock skew, audit
# trail, ES256 signing key). Only the access token lives longer than the default 300 s, so one
# token lasts the whole run: tokens are verified once and then cached by the server, so their
# lifetime does not change the cost of a request.
SERVER_CONFIG: dict[str, Any] = {"security": {"enabled": True, "token_ttl": 3600}}

UNSIGNED, SIGNED, ENCRYPTED = "unsigned", "signed", "encrypted"
REPLY_ONLY = "reply-only"  # reference: unsigned request, signed reply (the second partner)
SCENARIOS = (UNSIGNED, SIGNED, ENCRYPTED)  # the issue's: the baseline and the two targets
DESCRIPTION = {
    UNSIGNED: f"unsigned request, unsigned reply (the baseline; {SENDER}: sign_replies false)",
    SIGNED: "signed request, signed reply",
    ENCRYPTED: "encrypted+signed request, encrypted+signed reply",
    REPLY_ONLY: f"unsigned request, signed reply (reference, no target; {REF_SENDER}: "
    "sign_replies true)",
}
TARGETS = {SIGNED: 0.70, ENCRYPTED: 0.50}  # of the unsigned requests/s
CHECKS = 3  # requests sent and fully checked (status, signature, decryption, records) each way
PHASES = ("throughput", "latency", "micro")

# Unique bodies for a load run of T seconds at up to R req/s: R * T * MARGIN + SLACK
FIRST_GUESS_RATE = 5000.0  # req/s, for the very first warm-up (nothing measured yet)
BODY_MARGIN = 1.3
BODY_SLACK = 300
CHUNK = 1000  # bodies per task of the process pool


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Security benchmark of dcihub: unsigned vs signed vs signed+encrypted "
        "sync search against one secured server process."
    )
    p.add_argument("--people", type=int, default=10_000, help="population size (default 10000)")
    p.add_argument(
        "--duration",
        type=float,
        default=10.0,
        help="measured seconds of each load run (default 10)",
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=3.0,
        help="seconds of load before each measured run (default 3)",
    )
    p.add_argument(
        "--connections",
        type=int,
        default=16,
        help="wrk connections for max throughput (default 16)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure the scenarios one after the other this many times and take "
        "the median of each (default 1; 3 on a noisy machine)",
    )
    p.add_argument(
        "--no-reference",
        action="store_true",
        help="leave out the reference scenario (unsigned request, signed reply), "
        "which only its throughput row and the reply-signing cost use",
    )
    p.add_argument(
        "--latency-share",
        type=float,
        default=0.5,
        help="constant rate of the latency runs, as a share of the slowest of the "
        "three max throughputs (default 0.5): the same rate for all three",
    )
    p.add_argument(
        "--only",
        choices=PHASES,
        action="append",
        help="run only this part (repeatable); latency also measures throughput",
    )
    p.add_argument(
        "--store-url",
        help="SQLAlchemy URL of the store to build and serve "
        "(default: SQLite in the data directory)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        help="keep the store, keys, configs, request files and logs here (default: "
        "a temporary directory); a store already built is reused",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="leave the server running at the end (prints how to stop it)",
    )
    p.add_argument(
        "--pool",
        type=int,
        default=os.cpu_count() or 1,
        help="processes that sign and encrypt the request bodies (default: cores)",
    )
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rounds < 1 or args.pool < 1:
        p.error("--rounds and --pool must be at least 1")
    if not 0 < args.latency_share <= 1:
        p.error("--latency-share must be in (0, 1]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    phases = set(args.only or PHASES)
    if "latency" in phases:
        phases.add("throughput")

    def work() -> int:
        if "throughput" in phases:
            wrk_binary()
        return run(args, phases)

    return run_main(work, "the server was")


def run(args: argparse.Namespace, phases: set[str]) -> int:
    busy = warn_if_busy()
    return in_workdir(
        args.data_dir,
        args.keep,
        "dcihub-bench-security-",
        lambda workdir: run_in(workdir, args, phases, busy),
    )


# ---------------------------------------------------------------------------------------------
# Keys and credentials


@dataclass
class Credentials:
    """A benchmark partner (what a programme holds) and the node's public keys."""

    sender_id: str
    client_id: str
    client_secret: str
    private_jwks: dict[str, Any]
    node_jwks: dict[str, Any] = field(default_factory=dict)

    def partner_key(self, use: str) -> Any:
        from dcihub.security.keys import load_jwk

        return load_jwk(next(k for k in self.private_jwks["keys"] if k.get("use") == use))

    def node_key(self, kid: str | None, _alg: str | None = None) -> Any:
        """Resolver of the node's public keys by kid (for `signatures.verify`)."""
        from dcihub.security.keys import load_jwk

        for jwk in self.node_jwks.get("keys", []):
            if jwk.get("kid") == kid:
                return load_jwk(jwk)
        return None

    def node_encryption_jwk(self) -> dict[str, Any]:
        for jwk in self.node_jwks.get("keys", []):
            if jwk.get("use") == "enc" and jwk.get("alg") == "ECDH-ES+A256KW":
                return jwk
        raise BenchmarkError(
            "the node's /.well-known/jwks.json publishes no ECDH-ES+A256KW encryption key"
        )


def provision_partners(workdir: Path) -> tuple[Credentials, Credentials]:
    """Register the benchmark partners in the node's partner file (before the node starts).
    Both may search the CRVS and, like the demo partner, send unsigned requests (a signature
    one does send is always verified). The first (`SENDER`, the three measured scenarios) also
    asks for unsigned replies to its unsigned requests (`sign_replies: false`; its signed
    requests still get signed replies); the second (`REF_SENDER`, the reference scenario) keeps
    the default `sign_replies: true`. Keys: ES256 for signing, ECDH-ES+A256KW for encryption."""
    from dcihub.security.partners import PartnerRegistry
    from dcihub.security.provision import provision_partner as provision

    path = workdir / "partners.yaml"  # `security.partners_file` beside the config file
    registry = PartnerRegistry.load(path) if path.exists() else PartnerRegistry()
    made = []
    for sender, client_id, sign_replies in (
        (SENDER, CLIENT_ID, False),
        (REF_SENDER, REF_CLIENT_ID, True),
    ):
        registry.remove(sender)
        partner = provision(
            sender,
            client_id,
            name="security benchmark",
            scopes={REGISTRY: ["search"]},
            allow_unsigned=True,
            sign_replies=sign_replies,
        )
        registry.add(partner.partner, client_secret=partner.client_secret)
        made.append(Credentials(sender, client_id, partner.client_secret, partner.private_jwks))
    registry.save(path)
    return made[0], made[1]


def access_token(url: str, credentials: Credentials) -> str:
    response = httpx.post(
        f"{url}/oauth2/client/token",
        timeout=30,
        data={
            "grant_type": "client_credentials",
            "client_id": credentials.client_id,
            "client_secret": credentials.client_secret,
        },
    )
    if response.status_code != 200:
        raise BenchmarkError(
            f"the token endpoint refused the benchmark partner "
            f"{credentials.sender_id}: HTTP {response.status_code} "
            f"{response.text[:300]}"
        )
    return response.json()["access_token"]


# ---------------------------------------------------------------------------------------------
# Request bodies: made before each load run, in a process pool

_WORKER: dict[str, Any] = {}


def _init_worker(private_jwks: dict[str, Any], node_enc_jwk: dict[str, Any]) -> None:
    from dcihub.security.keys import load_jwk

    _WORKER["sig"] = load_jwk(next(k for k in private_jwks["keys"] if k.get("use") == "sig"))
    _WORKER["enc"] = load_jwk(node_enc_jwk)


def make_body(
    scenario: str,
    uin: str,
    message_id: str,
    transaction_id: str,
    signing_key: Any,
    node_enc_key: Any,
) -> bytes:
    """One sync search of one UIN, as `scenario` sends it (one line of JSON)."""
    from dcihub.security.jwe import encrypt_message
    from dcihub.security.signatures import sign

    sender = REF_SENDER if scenario == REPLY_ONLY else SENDER
    envelope = search_envelope([lookup_item("UIN", uin, "r-1")], message_id, transaction_id, sender)
    header, message = envelope["header"], envelope["message"]
    if scenario in (UNSIGNED, REPLY_ONLY):
        return orjson.dumps(envelope)
    if scenario == ENCRYPTED:
        message = encrypt_message(message, node_enc_key)
        header["is_msg_encrypted"] = True
    signature = sign(header, message, signing_key)  # the default profile: jws-detached
    return orjson.dumps({"signature": signature, "header": header, "message": message})


def _make_chunk(scenario: str, tag: str, start: int, uins: list[str]) -> list[bytes]:
    return [
        make_body(
            scenario,
            uin,
            f"m-{tag}-{start + i}",
            f"t-{tag}-{start + i}",
            _WORKER["sig"],
            _WORKER["enc"],
        )
        for i, uin in enumerate(uins)
    ]


class BodyFactory:
    """Makes unique request bodies (each its own message_id, each a different person while
    there are people left) in a pool of processes, and writes them as the load generators read
    them (one body per line)."""

    def __init__(
        self,
        credentials: Credentials,
        uins: list[str],
        headers: dict[str, dict[str, str]],
        workdir: Path,
        processes: int,
    ) -> None:
        """`credentials`: the partner whose keys sign (and encrypt) bodies; `headers`: the HTTP
        headers (its partner's token) of each scenario."""
        self.uins = uins
        self.workdir = workdir
        self.next_uin = 0
        self.headers_files = {}
        for scenario, scenario_headers in headers.items():
            path = workdir / f"security-{scenario}.headers"
            path.write_text("".join(f"{k}: {v}\n" for k, v in scenario_headers.items()))
            self.headers_files[scenario] = path
        self.pool = ProcessPoolExecutor(
            processes,
            initializer=_init_worker,
            initargs=(credentials.private_jwks, credentials.node_encryption_jwk()),
        )

    def __enter__(self) -> BodyFactory:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.pool.shutdown(cancel_futures=True)

    def chunks(self, scenario: str, count: int) -> Iterator[list[bytes]]:
        tag = uuid.uuid4().hex[:10]  # message ids never repeat across calls or runs
        futures = []
        for start in range(0, count, CHUNK):
            size = min(CHUNK, count - start)
            uins = [self.uins[(self.next_uin + i) % len(self.uins)] for i in range(size)]
            self.next_uin = (self.next_uin + size) % len(self.uins)
            futures.append(self.pool.submit(_make_chunk, scenario, tag, start, uins))
        for future in futures:
            yield future.result()

    def bodies(self, scenario: str, count: int) -> list[bytes]:
        return [body for chunk in self.chunks(scenario, count) for body in chunk]

    def files(self, scenario: str, count: int, name: str) -> RequestFiles:
        started = time.perf_counter()
        path = self.workdir / f"security-{name}.bodies"
        with path.open("wb") as out:
            for chunk in self.chunks(scenario, count):
                out.write(b"\n".join(chunk) + b"\n")
        say(f"  {count:,} unique {scenario} bodies made in {time.perf_counter() - started:.1f} s")
        return RequestFiles(PATH, path, self.headers_files[scenario])


def body_budget(rate: float, seconds: float, connections: int) -> int:
    return math.ceil(rate * seconds * BODY_MARGIN) + BODY_SLACK + connections


# ---------------------------------------------------------------------------------------------
# Checking answers


@dataclass
class Check:
    """What the first answers of a scenario were, fully checked."""

    responses: int
    request_bytes: int
    response_bytes: int
    signature: str  # profile, alg and kid of the verified reply signature, or "none"
    reply_encrypted: bool
    plain_reply: dict[str, Any]  # header + (decrypted) message of the last reply

    def as_dict(self) -> dict[str, Any]:
        return {
            "responses": self.responses,
            "request_bytes": self.request_bytes,
            "response_bytes": self.response_bytes,
            "reply_signature": self.signature,
            "reply_encrypted": self.reply_encrypted,
        }


def results_problem(message: Any) -> str | None:
    """Why a sync search reply's message is not a full success, or None."""
    try:
        results = message["search_response"]
    except (KeyError, TypeError):
        return f"not a sync search response message: {str(message)[:300]}"
    failed = [
        r
        for r in results
        if r.get("status") != "succ" or not (r.get("data") or {}).get("reg_records")
    ]
    if failed or not results:
        return f"{len(failed)} of {len(results)} items did not succeed: {str(failed)[:300]}"
    return None


def check_scenario(
    url: str, scenario: str, bodies: list[bytes], headers: dict[str, str], credentials: Credentials
) -> Check:
    """POST each body; each answer must be a 200, unsigned in the baseline (an unsigned request
    from the partner with `sign_replies: false`) and otherwise signed with a signature that
    verifies against the node's JWKS, encrypted exactly when the request was (then it must
    decrypt with the partner's key), and whose search succeeded with a record."""
    from dcihub.security.errors import SecurityError
    from dcihub.security.jwe import decrypt_message, is_encrypted_message
    from dcihub.security.signatures import verify

    decryption_key = credentials.partner_key("enc")
    check: Check | None = None
    with httpx.Client(timeout=30) as client:
        for body in bodies:
            response = client.post(url + PATH, content=body, headers=headers)

            def fail(problem: str, response: httpx.Response = response) -> BenchmarkError:
                return BenchmarkError(
                    f"{scenario} search: {problem}; the answer was HTTP "
                    f"{response.status_code} {response.text[:500]}"
                )

            if response.status_code != 200:
                raise fail("not answered with 200")
            doc = orjson.loads(response.content)
            header, message = doc.get("header") or {}, doc.get("message")
            if scenario == UNSIGNED:
                if "signature" in doc:
                    raise fail(
                        "the reply carries a signature, though the request was unsigned "
                        f"and {SENDER} has sign_replies: false: this run would not "
                        "measure the unsigned baseline"
                    )
                signature = "none"
            else:
                if not doc.get("signature"):
                    raise fail("the reply is not signed")
                try:
                    verified = verify(doc["signature"], header, message, credentials.node_key)
                except SecurityError as exc:
                    raise fail(f"the reply's signature does not verify: {exc.message}") from None
                signature = f"{verified.profile} {verified.alg} kid={verified.kid}"
            encrypted = bool(header.get("is_msg_encrypted"))
            if encrypted != (scenario == ENCRYPTED):
                raise fail(f"the reply is {'' if encrypted else 'not '}encrypted")
            if encrypted:
                if not is_encrypted_message(message):
                    raise fail("is_msg_encrypted but the message is no EncryptedMessage")
                try:
                    message = decrypt_message(message, lambda _kid: decryption_key)
                except SecurityError as exc:
                    raise fail(f"the reply does not decrypt: {exc.message}") from None
            problem = results_problem(message)
            if problem:
                raise fail(problem)
            check = Check(
                len(bodies),
                len(body),
                len(response.content),
                signature,
                encrypted,
                {"header": header, "message": message},
            )
    assert check is not None
    return check


# ---------------------------------------------------------------------------------------------
# Per-operation costs, in this process


def per_call_us(fn: Callable[[], object], budget_s: float = 0.3, rounds: int = 7) -> float:
    """Mean time of one call in the fastest of `rounds` rounds, in microseconds (the least
    disturbed by other work on the machine)."""
    fn()
    started, calls = time.perf_counter(), 0
    while time.perf_counter() - started < 0.02:
        fn()
        calls += 1
    per_round = max(1, int(calls * budget_s / rounds / 0.02))
    best = math.inf
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(per_round):
            fn()
        best = min(best, (time.perf_counter() - t0) / per_round * 1e6)
    return best


@dataclass(frozen=True)
class Op:
    key: str
    label: str
    side: str  # who does it: client | server | both


def measure_micro(
    credentials: Credentials, reply: dict[str, Any], uin: str
) -> tuple[list[Op], dict[str, float]]:
    """Cost of each security operation on the benchmark's own envelopes: a one-lookup request
    and the one-record reply the server gave. Node-side keys are fresh keys of the node's
    algorithms (ES256 signing, ECDH-ES+A256KW encryption): same cost, no private key read."""
    import rfc8785

    from dcihub.security.canonical import envelope_bytes, envelope_document
    from dcihub.security.jwe import decrypt_message, encrypt_message
    from dcihub.security.keys import generate_key, load_jwk
    from dcihub.security.signatures import inspect_signature, sign, verify

    partner_sig, partner_enc = credentials.partner_key("sig"), credentials.partner_key("enc")
    partner_sig_pub = load_jwk(partner_sig.as_dict(private=False))
    partner_enc_pub = load_jwk(partner_enc.as_dict(private=False))
    node_sig, node_enc = generate_key("sig", "ES256"), generate_key("enc", "ECDH-ES+A256KW")
    node_sig_pub = load_jwk(node_sig.as_dict(private=False))
    node_enc_pub = load_jwk(node_enc.as_dict(private=False))

    request = search_envelope([lookup_item("UIN", uin, "r-1")], "m-micro", "t-micro", SENDER)
    req_h, req_m = request["header"], request["message"]
    req_sig = sign(req_h, req_m, partner_sig)
    req_body = orjson.dumps({"signature": req_sig, **request})
    req_em = encrypt_message(req_m, node_enc_pub)
    req_eh = {**req_h, "is_msg_encrypted": True}
    req_esig = sign(req_eh, req_em, partner_sig)

    rep_h, rep_m = dict(reply["header"]), reply["message"]
    rep_h["is_msg_encrypted"] = False
    rep_sig = sign(rep_h, rep_m, node_sig)
    rep_em = encrypt_message(rep_m, partner_enc_pub)
    rep_eh = {**rep_h, "is_msg_encrypted": True}
    rep_esig = sign(rep_eh, rep_em, node_sig)

    def server_verify(sig: str, header: dict[str, Any], message: Any) -> None:
        inspect_signature(sig)  # the guard inspects first (to pre-fetch unknown kids)
        verify(sig, header, message, lambda _k, _a: partner_sig_pub)

    ops: list[tuple[Op, Callable[[], object]]] = [
        (
            Op("parse_request", "parse the request body (orjson; reference)", "server"),
            lambda: orjson.loads(req_body),
        ),
        (
            Op("jcs_request", "JCS canonical bytes of the request {header, message}", "both"),
            lambda: envelope_bytes(req_h, req_m),
        ),
        (
            Op("jcs_reply", "JCS canonical bytes of the reply {header, message}", "both"),
            lambda: envelope_bytes(rep_h, rep_m),
        ),
        (
            Op(
                "jcs_reply_rfc8785",
                "the same by rfc8785 (the slow path: floats, str subclasses such as enums, ...)",
                "both",
            ),
            lambda: rfc8785.dumps(envelope_document(rep_h, rep_m)),
        ),
        (
            Op("sign_request", "sign the request (jws-detached ES256)", "client"),
            lambda: sign(req_h, req_m, partner_sig),
        ),
        (
            Op("verify_request", "verify the request signature", "server"),
            lambda: server_verify(req_sig, req_h, req_m),
        ),
        (Op("sign_reply", "sign the reply", "server"), lambda: sign(rep_h, rep_m, node_sig)),
        (
            Op("verify_reply", "verify the reply signature", "client"),
            lambda: verify(rep_sig, rep_h, rep_m, lambda _k, _a: node_sig_pub),
        ),
        (
            Op(
                "encrypt_request", "encrypt the request message (ECDH-ES+A256KW, A256GCM)", "client"
            ),
            lambda: encrypt_message(req_m, node_enc_pub),
        ),
        (
            Op("verify_request_enc", "verify the signature of the encrypted request", "server"),
            lambda: server_verify(req_esig, req_eh, req_em),
        ),
        (
            Op("decrypt_request", "decrypt the request message", "server"),
            lambda: decrypt_message(req_em, lambda _kid: node_enc),
        ),
        (
            Op("encrypt_reply", "encrypt the reply message", "server"),
            lambda: encrypt_message(rep_m, partner_enc_pub),
        ),
        (
            Op("sign_reply_enc", "sign the encrypted reply", "server"),
            lambda: sign(rep_eh, rep_em, node_sig),
        ),
        (
            Op("decrypt_reply", "decrypt the reply message", "client"),
            lambda: decrypt_message(rep_em, lambda _kid: partner_enc),
        ),
        (
            Op("verify_reply_enc", "verify the signature of the encrypted reply", "client"),
            lambda: verify(rep_esig, rep_eh, rep_em, lambda _k, _a: node_sig_pub),
        ),
    ]
    costs = {op.key: per_call_us(fn) for op, fn in ops}
    return [op for op, _ in ops], costs


# The security work the server does per request in each scenario (keys of `measure_micro`)
SERVER_CRYPTO: dict[str, tuple[str, ...]] = {
    UNSIGNED: (),
    SIGNED: ("verify_request", "sign_reply"),
    ENCRYPTED: ("verify_request_enc", "decrypt_request", "encrypt_reply", "sign_reply_enc"),
    REPLY_ONLY: ("sign_reply",),
}


# ---------------------------------------------------------------------------------------------
# Load runs


@dataclass
class LoadRun:
    throughput: Throughput
    bodies: int  # unique bodies available to the measured run
    server_cpu_s: float | None  # CPU the server process group used during the measured run
    connections: int = 0  # wrk's: requests sent = answered + up to one per connection

    @property
    def ran_out(self) -> bool:
        """More requests than unique bodies: some were replays (answered from memory)."""
        return self.throughput.requests + self.connections > self.bodies

    @property
    def cpu_us_per_request(self) -> float | None:
        if self.server_cpu_s is None or not self.throughput.requests:
            return None
        return self.server_cpu_s / self.throughput.requests * 1e6

    @property
    def cpu_share(self) -> float | None:
        if self.server_cpu_s is None:
            return None
        return self.server_cpu_s / self.throughput.duration_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "throughput": self.throughput.as_dict(),
            "unique_bodies": self.bodies,
            "server_cpu_s": self.server_cpu_s,
            "server_cpu_us_per_request": self.cpu_us_per_request,
            "server_cpu_share": self.cpu_share,
        }


@dataclass
class ScenarioResult:
    check: Check | None = None
    runs: list[LoadRun] = field(default_factory=list)
    latency: LatencyAtRate | None = None

    @property
    def requests_per_s(self) -> float | None:
        rates = [r.throughput.requests_per_s for r in self.runs]
        return statistics.median(rates) if rates else None

    @property
    def cpu_us_per_request(self) -> float | None:
        values = [v for r in self.runs if (v := r.cpu_us_per_request) is not None]
        return statistics.median(values) if values else None

    @property
    def errors(self) -> int:
        return sum(r.throughput.error_count for r in self.runs)

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check.as_dict() if self.check else None,
            "requests_per_s": self.requests_per_s,
            "server_cpu_us_per_request": self.cpu_us_per_request,
            "runs": [r.as_dict() for r in self.runs],
            "latency": self.latency.as_dict() if self.latency else None,
        }


def max_throughput(
    server: Server,
    scenario: str,
    factory: BodyFactory,
    closed: ClosedLoopSettings,
    guess_rate: float,
) -> LoadRun:
    """Warm up, then measure with bodies enough for the warm-up's rate; if the measured run
    still sent more requests than there were bodies, measure again with more."""
    rate = guess_rate
    if closed.warmup > 0:
        files = factory.files(
            scenario, body_budget(rate, closed.warmup, closed.connections), f"{scenario}-warmup"
        )
        warm = run_wrk(server.url, files, closed, closed.warmup)
        say(f"  warm-up: {warm.requests_per_s:,.0f} req/s")
        rate = max(rate, warm.requests_per_s)
    for _attempt in range(2):
        count = body_budget(rate, closed.duration, closed.connections)
        files = factory.files(scenario, count, f"{scenario}-measured")
        cpu0 = process_group_cpu_seconds(server.pid)
        result = run_wrk(server.url, files, closed, closed.duration)
        cpu1 = process_group_cpu_seconds(server.pid)
        cpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
        run = LoadRun(result, count, cpu, closed.connections)
        if not run.ran_out:
            return run
        say(
            f"  sent {result.requests:,} requests but had only {count:,} unique bodies; "
            "measuring again with more"
        )
        rate = result.requests_per_s * 1.5
    return run


def constant_rate(
    server: Server, scenario: str, factory: BodyFactory, rate: float, open_: OpenLoopSettings
) -> LatencyAtRate:
    count = math.ceil(rate * (open_.warmup + open_.duration) * 1.2) + BODY_SLACK
    files = factory.files(scenario, count, f"{scenario}-latency")
    return latency_at_rate(server.url, files, rate, open_, scenario)


# ---------------------------------------------------------------------------------------------
# The run


def run_in(
    workdir: Path, args: argparse.Namespace, phases: set[str], cpu_busy_before: float | None
) -> int:
    options = DcihubOptions(
        people=args.people, store_url=args.store_url, registry=REGISTRY, config=SERVER_CONFIG
    )
    say(f"population: {options.people:,} people into {options.store_url or workdir / 'bench.db'}")
    population = prepare_population(options, workdir)
    say("  built" if population.built_now else "  already built; reused")
    credentials, ref_credentials = provision_partners(workdir)
    measured = SCENARIOS if args.no_reference else (*SCENARIOS, REPLY_ONLY)
    results = {s: ScenarioResult() for s in measured}
    ops: list[Op] = []
    costs: dict[str, float] = {}
    with ChildProcesses(workdir, keep=args.keep) as procs:
        server = start_dcihub(procs, options, population.store_url, workdir)
        say(
            f"dcihub serving on {server.url} (pid {server.pid}); config {SERVER_CONFIG}; "
            f"partner {SENDER}: allow_unsigned, sign_replies false, jws-detached ES256, "
            f"ECDH-ES+A256KW"
            + ("" if args.no_reference else f"; reference partner {REF_SENDER}: allow_unsigned")
        )
        node_jwks = httpx.get(f"{server.url}/.well-known/jwks.json", timeout=30).json()
        credentials.node_jwks = ref_credentials.node_jwks = node_jwks
        tokens = {c.sender_id: access_token(server.url, c) for c in (credentials, ref_credentials)}
        headers = {
            s: {
                "Content-Type": "application/json",
                "Authorization": "Bearer " + tokens[REF_SENDER if s == REPLY_ONLY else SENDER],
            }
            for s in measured
        }
        with BodyFactory(credentials, population.uins, headers, workdir, args.pool) as factory:
            for scenario in measured:
                check = check_scenario(
                    server.url,
                    scenario,
                    factory.bodies(scenario, CHECKS),
                    headers[scenario],
                    credentials,
                )
                results[scenario].check = check
                reply = (
                    "reply not signed (as asked)"
                    if check.signature == "none"
                    else f"reply signature verified ({check.signature})"
                )
                say(
                    f"{scenario}: {CHECKS} answers 200, {reply}"
                    f"{', decrypted' if check.reply_encrypted else ''}, every search succeeded"
                )
            if "micro" in phases:
                say("per-operation costs, in this process")
                ops, costs = measure_micro(
                    credentials, results[UNSIGNED].check.plain_reply, population.uins[0]
                )
            if "throughput" in phases:
                measure_load(server, factory, results, args, "latency" in phases)
    rows = build_rows(results, costs, args)
    print_report(results, rows, ops, costs, args)
    payload = {
        "benchmark": "security",
        "environment": environment(REPO) | {"cpu_busy_before": cpu_busy_before},
        "server_config": SERVER_CONFIG,
        "baseline": UNSIGNED,
        "partner": {
            "sender_id": SENDER,
            "allow_unsigned": True,
            "sign_replies": False,
            "signature_profile": "jws-detached",
            "signing_alg": "ES256",
            "encryption_alg": "ECDH-ES+A256KW",
            "scenarios": list(SCENARIOS),
        },
        "reference_partner": None
        if args.no_reference
        else {
            "sender_id": REF_SENDER,
            "allow_unsigned": True,
            "sign_replies": True,
            "scenarios": [REPLY_ONLY],
        },
        "options": vars(args) | {"phases": sorted(phases)},
        "results": {s: r.as_dict() for s, r in results.items()},
        "micro_us": costs,
    }
    path = write_results(args.results_dir, payload, rows, prefix="security-")
    print(f"\nresults written to {path}")
    if args.keep:
        print(
            f"\n--keep: dcihub left running on {server.url}, pid {server.pid}; stop it with "
            f"`kill {server.pid}`; configs, keys, request files and logs are in {workdir}"
        )
    return 1 if any(r.result == FAIL for r in rows) else 0


def measure_load(
    server: Server,
    factory: BodyFactory,
    results: dict[str, ScenarioResult],
    args: argparse.Namespace,
    latency: bool,
) -> None:
    closed = ClosedLoopSettings(args.duration, args.warmup, args.connections)
    guess = FIRST_GUESS_RATE
    for round_no in range(1, args.rounds + 1):
        for scenario in results:  # the baseline first, the reference (if any) last
            say(
                f"{scenario} max throughput{f' (round {round_no})' if args.rounds > 1 else ''}: "
                f"wrk -t{closed.threads} -c{closed.connections}, {closed.warmup:g}s warm-up + "
                f"{closed.duration:g}s"
            )
            run = max_throughput(server, scenario, factory, closed, guess)
            results[scenario].runs.append(run)
            cpu = run.cpu_us_per_request
            say(
                f"  {run.throughput.requests_per_s:,.0f} req/s"
                + (
                    f"; server CPU {cpu:,.0f} µs/request, {run.cpu_share:.0%} of a core"
                    if cpu is not None and run.cpu_share is not None
                    else ""
                )
            )
            guess = max(guess if scenario != UNSIGNED else 0, run.throughput.requests_per_s)
    if not latency:
        return
    slowest = min(results[s].requests_per_s or 0.0 for s in SCENARIOS)
    rate = slowest * args.latency_share
    if rate <= 0:
        return
    open_ = OpenLoopSettings(args.duration, min(args.warmup, 2.0))
    for scenario in SCENARIOS:
        say(
            f"{scenario} latency at a constant {rate:,.0f} req/s ({args.latency_share:.0%} of "
            f"the slowest max), {open_.warmup:g}s warm-up + {open_.duration:g}s"
        )
        lat = constant_rate(server, scenario, factory, rate, open_)
        results[scenario].latency = lat
        say(f"  p50 {lat.latency_ms.get('p50', float('nan')):.1f} ms, p99 {lat.p99_ms:.1f} ms")


# ---------------------------------------------------------------------------------------------
# Report


def ratio_result(
    ratio: float, target: float, result: ScenarioResult, baseline: ScenarioResult
) -> tuple[str, str]:
    notes = []
    errors = result.errors + baseline.errors
    if errors:
        notes.append(f"{errors} errors during the load")
    if any(r.ran_out for r in result.runs + baseline.runs):
        notes.append(
            "a run had fewer unique bodies than requests: replays were answered from memory"
        )
    verdict = PASS if ratio >= target and not notes else FAIL
    return verdict, "; ".join(notes)


def build_rows(
    results: dict[str, ScenarioResult], costs: dict[str, float], args: argparse.Namespace
) -> list[Row]:
    rows: list[Row] = []
    wrk = f"wrk -t1 -c{args.connections}, {args.duration:g}s"
    if args.rounds > 1:
        wrk += f", median of {args.rounds}"
    for scenario, r in results.items():
        if r.requests_per_s is None:
            continue
        notes = []
        if r.errors:
            notes.append(
                f"{r.errors} errors: "
                + "; ".join(str(x.throughput.errors) for x in r.runs if x.throughput.error_count)
            )
        if any(x.ran_out for x in r.runs):
            notes.append("fewer unique bodies than requests: some were replays")
        name = f"{scenario} max throughput ({wrk})"
        if scenario == UNSIGNED:
            name = f"{scenario} (baseline) max throughput ({wrk})"
        elif scenario == REPLY_ONLY:
            name = f"{scenario} (reference) max throughput ({wrk})"
        rows.append(
            Row(
                name,
                f"{r.requests_per_s:,.0f} req/s",
                result=FAIL if notes else INFO,
                note="; ".join(notes),
            )
        )
    base = results[UNSIGNED]
    if base.requests_per_s:
        for scenario, target in TARGETS.items():
            r = results[scenario]
            if r.requests_per_s is None:
                continue
            ratio = r.requests_per_s / base.requests_per_s
            verdict, note = ratio_result(ratio, target, r, base)
            rows.append(
                Row(
                    f"{scenario} / unsigned throughput",
                    f"{ratio:.2f}",
                    f">= {target:.2f}",
                    verdict,
                    note,
                )
            )
        ref = results.get(REPLY_ONLY)
        if ref is not None and ref.requests_per_s:
            ratio = ref.requests_per_s / base.requests_per_s
            extra_us = 1e6 / ref.requests_per_s - 1e6 / base.requests_per_s
            note = f"the reply signature adds {extra_us:+,.0f} µs per request (wall)"
            if "sign_reply" in costs:
                note += (
                    f"; signing a reply costs {costs['sign_reply']:.0f} µs in this process "
                    f"({reply_signing_slow_us(costs):.0f} µs if canonicalised by rfc8785)"
                )
            rows.append(
                Row(f"{REPLY_ONLY} / unsigned throughput", f"{ratio:.2f}", "reference", INFO, note)
            )
    for scenario in SCENARIOS:
        lat = results[scenario].latency
        if lat is None:
            continue
        notes = []
        if lat.error_count:
            notes.append(
                f"{lat.error_count} errors: {lat.status_errors or ''}{lat.other_errors or ''}"
            )
        if lat.achieved_rate < 0.95 * lat.target_rate:
            notes.append(f"the server answered only {lat.achieved_rate:,.0f} req/s")
        if not lat.generator_kept_up:
            notes.append("load generator did not keep up: " + "; ".join(lat.generator_problems))
        result = FAIL if lat.error_count else (UNSURE if not lat.generator_kept_up else INFO)
        ms = lat.latency_ms
        rows.append(
            Row(
                f"{scenario} p50 / p99 latency @ {lat.target_rate:,.0f} req/s",
                f"{ms.get('p50', float('nan')):.1f} / {ms.get('p99', float('nan')):.1f} ms",
                "reference",
                result,
                "; ".join(notes),
            )
        )
    return rows


def reply_signing_slow_us(costs: dict[str, float]) -> float:
    """Signing the reply when its canonical bytes come from rfc8785 instead of the orjson fast
    path (e.g. when the server's reply holds a str subclass such as an enum member)."""
    return costs["sign_reply"] - costs["jcs_reply"] + costs["jcs_reply_rfc8785"]


def print_report(
    results: dict[str, ScenarioResult],
    rows: list[Row],
    ops: list[Op],
    costs: dict[str, float],
    args: argparse.Namespace,
) -> None:
    print(
        "\ndcihub security benchmark: the same sync search (one idtype-value UIN lookup) "
        "from one partner (the reference\nfrom a second), against one secured server "
        "process\n"
    )
    for scenario in results:
        print(f"  {scenario:<10} {DESCRIPTION[scenario]}")
    print(
        "  Ratios are against the unsigned baseline measured in this run, same server "
        "process, same partner.\n"
    )
    print(table(rows))
    details = []
    for scenario, r in results.items():
        if r.check:
            c = r.check
            signature = (
                "reply not signed"
                if c.signature == "none"
                else f"reply signature verified ({c.signature})"
            )
            details.append(
                f"{scenario} check: {c.responses} answers 200, {signature}, reply "
                f"{'encrypted, decrypted' if c.reply_encrypted else 'not encrypted'}; "
                f"request {c.request_bytes:,} bytes, reply {c.response_bytes:,} bytes"
            )
        for i, run in enumerate(r.runs, 1):
            cpu = run.cpu_us_per_request
            extra = (
                f"; server CPU {cpu:,.0f} µs/request ({run.cpu_share:.0%} of a core)"
                if cpu is not None and run.cpu_share is not None
                else ""
            )
            label = f" round {i}" if len(r.runs) > 1 else ""
            details.append(
                f"{scenario} throughput{label}: {describe_throughput(run.throughput)}"
                f"; {run.bodies:,} unique bodies{extra}"
            )
        if r.latency:
            details.append(f"{scenario} latency: {describe_latency(r.latency)}")
    if details:
        print("\ndetails")
        for line in details:
            print(f"  {line}")
    if costs:
        print(
            "\nper-operation costs (this process, best of 7 rounds, µs per call; typical "
            "envelopes: the one-lookup\nrequest and its one-record reply; who does it)"
        )
        width = max(len(op.label) for op in ops)
        for op in ops:
            print(f"  {op.label:<{width}}  {costs[op.key]:8.1f}  {op.side}")
    if costs and any(r.runs for r in results.values()):
        print_time_split(results, costs)


def print_time_split(results: dict[str, ScenarioResult], costs: dict[str, float]) -> None:
    """Measured time per request (wall and server CPU) beside the security work the server
    does for it, according to the per-operation costs."""
    print(
        "\nwhere the server's time goes (µs per request; wall = 1 / requests/s of one "
        "server process;\nCPU = what its process group used, per request; crypto = the "
        "security operations it does, from the costs above)"
    )
    print(
        f"  {'':<10} {'wall':>7} {'Δ wall':>7} {'CPU':>7} {'Δ CPU':>7} {'crypto':>7} "
        f"{'Δ crypto':>8}  operations"
    )
    base = results[UNSIGNED]
    base_wall = 1e6 / base.requests_per_s if base.requests_per_s else None
    base_cpu = base.cpu_us_per_request
    base_crypto = sum(costs[k] for k in SERVER_CRYPTO[UNSIGNED])  # none: nothing signed

    def cell(value: float | None, signed: bool = False) -> str:
        if value is None:
            return "-"
        return f"{value:+,.0f}" if signed else f"{value:,.0f}"

    for scenario, r in results.items():
        wall = 1e6 / r.requests_per_s if r.requests_per_s else None
        cpu = r.cpu_us_per_request
        crypto = sum(costs[k] for k in SERVER_CRYPTO[scenario])
        d_wall = wall - base_wall if wall is not None and base_wall is not None else None
        d_cpu = cpu - base_cpu if cpu is not None and base_cpu is not None else None
        print(
            f"  {scenario:<10} {cell(wall):>7} {cell(d_wall, True):>7} {cell(cpu):>7} "
            f"{cell(d_cpu, True):>7} {cell(crypto):>7} {cell(crypto - base_crypto, True):>8}"
            f"  {' + '.join(SERVER_CRYPTO[scenario]) or '(none)'}"
        )
    measured = (
        f"; the reference scenario ({REPLY_ONLY})\n  measures it in the server"
        if REPLY_ONLY in results
        else ""
    )
    print(
        "  The unsigned baseline does no signature or encryption work at all. Signing a reply "
        f"costs {costs['sign_reply']:,.0f} µs\n  here, {reply_signing_slow_us(costs):,.0f} µs "
        "if its canonical bytes come from rfc8785 rather than the orjson fast path (from\n"
        f"  outside, the benchmark cannot tell which one the server takes){measured}. Δ wall "
        "beyond Δ crypto is\n  work outside these operations (the pipeline around them, "
        "bigger bodies to read and write, store\n  for replay protection and answer) or noise."
    )


if __name__ == "__main__":
    sys.exit(main())
