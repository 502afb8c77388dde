"""`dcihub conform`: the conformance kit from a terminal (docs/conformance.md).

    dcihub conform server URL --registry social --token-url … --client-id … --client-secret …
    dcihub conform client --registry crvs --port 9100
    dcihub conform requirements [--coverage]

Registered on the main app by `register(app)` (cli.py). Exit status: 0 when no core
requirement failed and at least one held, 1 when one failed or none could be judged (the target
did not answer), 2 for a usage or configuration error (nothing tested).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    from .conformance.runner import Report
    from .conformance.session import Target

__all__ = ["register"]

DEFAULT_DEMO = Path("dcihub-demo") / "demo.json"
CONNECTION = "Connection (flags; without URL, the demo's demo.json)"
KIT = "What to test"
OUTPUT = "Reports"
errors = Console(stderr=True)

conform_app = typer.Typer(
    help="Check a DCI registry server or a programme's client against the standard, "
    "requirement by requirement (docs/conformance.md).",
    no_args_is_help=True,
)


class UsageError(Exception):
    """A bad option or setting: exit status 2, nothing was tested."""


def _fail(message: str, code: int) -> typer.Exit:
    one_line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    errors.print(f"[red]error:[/red] {escape(one_line)}", soft_wrap=True, highlight=False)
    return typer.Exit(code)


@contextmanager
def _one_line_errors() -> Iterator[None]:
    from .conformance.session import TargetError

    try:
        yield
    except (UsageError, TargetError) as exc:
        raise _fail(str(exc), 2) from None
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as exc:  # a defect, still one line (DCIHUB_DEBUG=1: traceback)
        if os.environ.get("DCIHUB_DEBUG"):
            raise
        raise _fail(f"unexpected {type(exc).__name__}: {exc}", 2) from None


def _read_doc(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        return tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{what} {path} is not valid {path.suffix[1:] or 'JSON'}: {exc}") from None


def parse_known(values: list[str]) -> list[tuple[str, str]]:
    known = []
    for text in values:
        id_type, sep, value = text.partition("=")
        if not sep or not id_type.strip() or not value.strip():
            raise UsageError(f"--known {text!r}: give TYPE=VALUE, e.g. --known UIN=8462951730")
        known.append((id_type.strip(), value.strip()))
    return known


def fixture_known(path: Path, registry: str) -> list[tuple[str, str]]:
    """Known identifiers from a fixture: a list of {type, value}, an object with `known`
    (that list), or a demo.json-like object with `samples` (registry -> lists)."""
    doc = _read_doc(path, "fixture")
    entries: Any = doc
    if isinstance(doc, dict):
        if "known" in doc:
            entries = doc["known"]
        elif "samples" in doc:
            entries = _sample_entries((doc.get("samples") or {}).get(registry) or {})
        elif registry in doc:
            entries = _sample_entries(doc[registry])
    if not isinstance(entries, list):
        raise UsageError(f"fixture {path}: expected a list of {{type, value}} objects")
    known = []
    for entry in entries:
        if not isinstance(entry, dict) or not entry.get("type") or not entry.get("value"):
            raise UsageError(f"fixture {path}: entry {entry!r} is not a {{type, value}} object")
        known.append((str(entry["type"]), str(entry["value"])))
    return known


def _sample_entries(samples: Any) -> list[Any]:
    if isinstance(samples, list):
        return samples
    if isinstance(samples, dict):
        listed = samples.get("identifiers") or []
        return [e for e in listed if isinstance(e, dict)]
    return []


def demo_target(demo: Path, registry: str) -> dict[str, Any]:
    """Connection settings from a `dcihub demo`'s demo.json (its demo partner)."""
    info = _read_doc(demo, "demo file")
    if not isinstance(info, dict):
        raise UsageError(f"demo file {demo} is not a JSON object")
    registries = info.get("registries") or {}
    if registry not in registries:
        raise UsageError(f"{demo} has no registry {registry!r}; it serves {', '.join(registries)}")
    keys = info.get("partner_jwk")
    keys_path = Path(keys) if keys else None
    if keys_path is not None and not keys_path.is_absolute():
        keys_path = demo.parent / keys_path
    samples = (info.get("samples") or {}).get(registry) or {}
    return {
        "base_url": registries[registry],
        "token_url": info.get("token_url"),
        "client_id": info.get("client_id"),
        "client_secret": info.get("client_secret"),
        "sender_id": info.get("sender_id"),
        "receiver_id": (info.get("registry_ids") or {}).get(registry),
        "jwks_url": info.get("jwks_url"),
        "keys_file": keys_path,
        "known": [(str(e["type"]), str(e["value"])) for e in _sample_entries(samples)],
        # the demo partner alone may send unsigned messages (so that a plain curl works)
        "unsigned_allowed": True,
    }


def _registries() -> list[str]:
    from .standard.profiles import PROFILES

    return list(PROFILES)


def _check_registry(registry: str | None) -> str:
    if registry is None:
        raise UsageError(f"give --registry: one of {', '.join(_registries())}")
    if registry not in _registries():
        raise UsageError(f"--registry {registry!r}: choose one of {', '.join(_registries())}")
    return registry


@conform_app.command("server")
def conform_server(
    url: Annotated[
        str | None,
        typer.Argument(
            help="The registry's DCI API base: <URL>/registry/sync/search is its sync search "
            "(dcihub: http://host:port/<registry>). Without it: the demo's demo.json."
        ),
    ] = None,
    registry: Annotated[
        str | None,
        typer.Option(
            "--registry",
            "-r",
            help="social, crvs, dr, fr, ibr or ess (required)",
            rich_help_panel=KIT,
        ),
    ] = None,
    token_url: Annotated[
        str | None, typer.Option(help="OAuth2 token endpoint", rich_help_panel=CONNECTION)
    ] = None,
    client_id: Annotated[str | None, typer.Option(rich_help_panel=CONNECTION)] = None,
    client_secret: Annotated[
        str | None,
        typer.Option(envvar="DCIHUB_CLIENT_SECRET", rich_help_panel=CONNECTION),
    ] = None,
    bearer: Annotated[
        str | None,
        typer.Option(
            envvar="DCIHUB_TOKEN",
            help="a bearer token instead of client credentials",
            rich_help_panel=CONNECTION,
        ),
    ] = None,
    sender_id: Annotated[
        str | None,
        typer.Option(help="the tester's sender_id at the registry", rich_help_panel=CONNECTION),
    ] = None,
    receiver_id: Annotated[
        str | None,
        typer.Option(help="the registry's id (its replies' sender_id)", rich_help_panel=CONNECTION),
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option(
            "--key",
            help="the tester's private JWK set (signing and decryption keys)",
            rich_help_panel=CONNECTION,
        ),
    ] = None,
    jwks_url: Annotated[
        str | None,
        typer.Option(
            help="the registry's JWKS (default: <URL>/.well-known/jwks.json, then the "
            "server root's)",
            rich_help_panel=CONNECTION,
        ),
    ] = None,
    callback_host: Annotated[
        str,
        typer.Option(help="where the kit's callback receiver listens", rich_help_panel=CONNECTION),
    ] = "127.0.0.1",
    callback_port: Annotated[
        int, typer.Option(help="its port (0: any free port)", rich_help_panel=CONNECTION)
    ] = 0,
    callback_url: Annotated[
        str | None,
        typer.Option(
            help="the receiver's address as the registry reaches it (behind NAT or a proxy)",
            rich_help_panel=CONNECTION,
        ),
    ] = None,
    demo: Annotated[
        Path | None,
        typer.Option(
            help="demo.json of a `dcihub demo` (default ./dcihub-demo/demo.json), used when "
            "no URL is given",
            rich_help_panel=CONNECTION,
        ),
    ] = None,
    known: Annotated[
        list[str] | None,
        typer.Option(
            "--known",
            help="TYPE=VALUE of a record that exists (repeatable), for the data checks",
            rich_help_panel=KIT,
        ),
    ] = None,
    fixture: Annotated[
        Path | None,
        typer.Option(
            help="known records: JSON list of {type, value} (or a demo.json)",
            rich_help_panel=KIT,
        ),
    ] = None,
    tier: Annotated[
        list[str] | None,
        typer.Option(
            "--tier",
            help="core, security, robustness (repeatable; default all)",
            rich_help_panel=KIT,
        ),
    ] = None,
    spec: Annotated[
        Path | None,
        typer.Option(
            help="a folder holding spec/<registry>_api_v1.0.0.yaml: also validate every body "
            "against the official OpenAPI contract",
            rich_help_panel=KIT,
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(help="seconds per exchange and per callback", rich_help_panel=KIT),
    ] = 10.0,
    unsigned_allowed: Annotated[
        bool,
        typer.Option(
            help="the tester's partner may send unsigned messages: do not judge the refusal "
            "of unsigned requests (set for the demo)",
            rich_help_panel=KIT,
        ),
    ] = False,
    expired_token: Annotated[
        str | None,
        typer.Option(
            help="an access token of the registry's that has expired", rich_help_panel=KIT
        ),
    ] = None,
    trigger: Annotated[
        str | None,
        typer.Option(
            help="a shell command that makes one change in the registry the kit's subscription "
            "follows (run after subscribe, with DCI_REGISTRY, DCI_EVENT_TYPE, "
            "DCI_SUBSCRIPTION_CODE(S), DCI_TRANSACTION_ID, DCI_ID_TYPE, DCI_ID_VALUE set): "
            "judges the notify it causes (NOTIFY-*)",
            rich_help_panel=KIT,
        ),
    ] = None,
    trigger_event: Annotated[
        str | None,
        typer.Option(
            help="the event type the --trigger raises (default: CRVS Death, DR "
            "DisabilityStatusChange, Social HouseHoldMemberLeft, IBR/ESS their status changes, "
            "FR REGISTER)",
            rich_help_panel=KIT,
        ),
    ] = None,
    html: Annotated[
        Path | None, typer.Option(help="write a self-contained HTML report", rich_help_panel=OUTPUT)
    ] = None,
    junit: Annotated[
        Path | None, typer.Option(help="write JUnit XML", rich_help_panel=OUTPUT)
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="write the report as JSON", rich_help_panel=OUTPUT)
    ] = None,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="list passed requirements too", rich_help_panel=OUTPUT
        ),
    ] = False,
) -> None:
    """Run the requirement-tagged checks against a DCI registry server.

    Exit status 0 when no core requirement failed and at least one held, 1 when one failed or
    none could be judged (the server did not answer; security and robustness failures are
    reported but do not change it), 2 when the settings are wrong (nothing was tested)."""
    with _one_line_errors():
        from .conformance.session import Target

        registry = _check_registry(registry)
        data: dict[str, Any] = {}
        if url is None:
            path = demo or DEFAULT_DEMO
            if not path.exists():
                raise UsageError(
                    f"give the registry's URL (and its credentials), or run next to a "
                    f"`dcihub demo` (no {path} here)"
                )
            data = demo_target(path, registry)
        else:
            data["base_url"] = url
        flags = {
            "token_url": token_url,
            "client_id": client_id,
            "client_secret": client_secret,
            "bearer": bearer,
            "sender_id": sender_id,
            "receiver_id": receiver_id,
            "keys_file": key,
            "jwks_url": jwks_url,
        }
        data.update({k: v for k, v in flags.items() if v is not None})
        if not data.get("sender_id"):
            raise UsageError("give --sender-id (the tester's sender_id at the registry)")
        if not data.get("bearer") and not (data.get("token_url") and data.get("client_id")):
            raise UsageError(
                "give --token-url with --client-id and --client-secret, or --bearer TOKEN"
            )
        if known or fixture:
            data["known"] = parse_known(known or [])
            if fixture is not None:
                data["known"] += fixture_known(fixture, registry)
        if unsigned_allowed:
            data["unsigned_allowed"] = True
        if spec is not None and not (spec / "spec").is_dir():
            raise UsageError(f"--spec {spec}: no spec/ folder there")
        if timeout <= 0:
            raise UsageError("--timeout must be positive")
        target = Target(
            registry=registry,
            callback_host=callback_host,
            callback_port=callback_port,
            callback_url=callback_url,
            timeout=timeout,
            spec_dir=spec,
            expired_token=expired_token,
            trigger=trigger or None,
            trigger_event=trigger_event,
            **data,
        )
        report = _run(target, tier or [])
        _finish(report, html, junit, json_path, verbose)


def _run(target: Target, tiers: list[str]) -> Report:
    from .conformance.requirements import TIERS
    from .conformance.runner import run_server

    console = Console(stderr=True)
    with Progress(
        TextColumn("[bold]conform[/] {task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} checks"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(f"{target.registry} at {target.base_url}", total=None)

        def step(name: str, index: int, total: int) -> None:
            progress.update(task, completed=index, total=total, description=name)

        return run_server(target, tiers or TIERS, progress=step)


def _finish(
    report: Report, html: Path | None, junit: Path | None, json_path: Path | None, verbose: bool
) -> None:
    from .conformance.reports import print_summary, write_reports

    out = Console(highlight=False)
    print_summary(report, out, verbose=verbose)
    try:
        written = write_reports(report, html, junit, json_path)
    except OSError as exc:
        raise UsageError(f"cannot write a report: {exc}") from None
    for path in written:
        out.print(f"wrote {path}", soft_wrap=True, markup=False)
    raise typer.Exit(report.exit_code)


@conform_app.command("client")
def conform_client(
    registry: Annotated[
        str | None,
        typer.Option(
            "--registry",
            "-r",
            help="social, crvs, dr, fr, ibr or ess (required)",
            rich_help_panel=KIT,
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(help="address to listen on", rich_help_panel=KIT)
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (0: any free port)", rich_help_panel=KIT)] = 0,
    client_keys: Annotated[
        Path | None,
        typer.Option(
            help="the client's public JWK set, to verify its signatures (default: the kit "
            "writes a key set for the client and prints its path)",
            rich_help_panel=KIT,
        ),
    ] = None,
    sender_id: Annotated[
        str, typer.Option(help="the client's sender_id", rich_help_panel=KIT)
    ] = "conformance.client",
    callback_prefix: Annotated[
        list[str] | None,
        typer.Option(
            help="where the client's callbacks may go (repeatable; default loopback)",
            rich_help_panel=KIT,
        ),
    ] = None,
    people: Annotated[
        int,
        typer.Option(
            help="people in the simulated registry's synthetic population", rich_help_panel=KIT
        ),
    ] = 300,
    requests: Annotated[
        int | None,
        typer.Option(help="judge after this many DCI requests", rich_help_panel=KIT),
    ] = None,
    seconds: Annotated[
        float | None,
        typer.Option(help="judge after this many seconds", rich_help_panel=KIT),
    ] = None,
    spec: Annotated[
        Path | None,
        typer.Option(
            help="also validate request bodies against the official OpenAPI contract in DIR",
            rich_help_panel=KIT,
        ),
    ] = None,
    html: Annotated[
        Path | None, typer.Option(help="write a self-contained HTML report", rich_help_panel=OUTPUT)
    ] = None,
    junit: Annotated[
        Path | None, typer.Option(help="write JUnit XML", rich_help_panel=OUTPUT)
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="write the report as JSON", rich_help_panel=OUTPUT)
    ] = None,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="list passed requirements too", rich_help_panel=OUTPUT
        ),
    ] = False,
) -> None:
    """Serve a strict simulated registry, record every request a programme's client makes,
    then judge them (on Ctrl-C, after --requests N or --seconds S).

    Exit status 0 when no core requirement failed and at least one held, 1 when one failed or
    none could be judged (the client made no request), 2 for a usage error."""
    import time

    with _one_line_errors():
        from .conformance.client_kit import ClientKit

        registry = _check_registry(registry)
        if people < 10:
            raise UsageError("--people must be at least 10")
        keys = None
        if client_keys is not None:
            keys = _read_doc(client_keys, "client keys")
            if not isinstance(keys, dict) or not isinstance(keys.get("keys"), list):
                raise UsageError(f'{client_keys}: expected a JWK set {{"keys": [...]}}')
        if spec is not None and not (spec / "spec").is_dir():
            raise UsageError(f"--spec {spec}: no spec/ folder there")
        kit = ClientKit(
            registry,
            host=host,
            port=port,
            client_keys=keys,
            sender_id=sender_id,
            callback_prefixes=callback_prefix,
            people=people,
            spec_dir=spec,
        )
        info = kit.start()
        out = Console(highlight=False)
        out.print("simulated registry ready; point the client at:", soft_wrap=True)
        for name in (
            "base_url",
            "token_url",
            "jwks_url",
            "client_id",
            "client_secret",
            "sender_id",
            "receiver_id",
            "keys_file",
        ):
            if info.get(name):
                out.print(f"  {name}: {info[name]}", soft_wrap=True, markup=False)
        known = ", ".join(f"{k['type']}={k['value']}" for k in info.get("known", []))
        if known:
            out.print(f"  known records: {known}", soft_wrap=True, markup=False)
        out.print("waiting for the client's requests (Ctrl-C to judge them)", soft_wrap=True)
        deadline = time.monotonic() + seconds if seconds else None
        try:
            while True:
                if requests is not None and len(kit.dci_requests()) >= requests:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                time.sleep(0.1)
        except KeyboardInterrupt:
            pass
        report = kit.finish()
        _finish(report, html, junit, json_path, verbose)


@conform_app.command("requirements")
def conform_requirements(
    coverage: Annotated[
        bool,
        typer.Option(help="show which checks verify each requirement, and which have none"),
    ] = False,
    actor: Annotated[str | None, typer.Option(help="server or client (default both)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List the requirements the kit checks (id, tier, statement, the standard's section)."""
    with _one_line_errors():
        from .conformance.coverage import coverage_map
        from .conformance.requirements import ACTORS, load_requirements

        if actor is not None and actor not in ACTORS:
            raise UsageError(f"--actor {actor!r}: choose server or client")
        requirements = [r for r in load_requirements() if actor in (None, r.actor)]
        verified = coverage_map()
        out = Console(highlight=False)
        if as_json:
            rows = [
                {
                    "id": r.id,
                    "tier": r.tier,
                    "actor": r.actor,
                    "statement": r.statement,
                    "spec": r.spec,
                    "registries": list(r.registries),
                    **({"checks": verified.get(r.id, [])} if coverage else {}),
                }
                for r in requirements
            ]
            out.print(json.dumps(rows, indent=2), soft_wrap=True, markup=False)
            return
        table = Table()
        for column in ("id", "tier", "actor", "statement"):
            table.add_column(column)
        if coverage:
            table.add_column("verified by")
        else:
            table.add_column("spec")
        for r in requirements:
            extra = ", ".join(verified.get(r.id, [])) or "[red]none[/]" if coverage else r.spec
            table.add_row(r.id, r.tier, r.actor, r.statement, extra)
        out.print(table)
        if coverage:
            missing = [r.id for r in requirements if not verified.get(r.id)]
            out.print(
                f"{len(requirements) - len(missing)} of {len(requirements)} requirements have "
                f"a check" + (f"; none yet for: {', '.join(missing)}" if missing else ""),
                soft_wrap=True,
            )


def register(app: typer.Typer) -> None:
    app.add_typer(conform_app, name="conform")
