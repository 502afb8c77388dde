"""The `dcihub` command: thin — parse, call, print."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from enum import Enum, StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar, cast

import typer
from rich.console import Console

from . import __version__

if TYPE_CHECKING:
    from fastapi import FastAPI

    from .admin import PartnerChanges, PartnerResult
    from .config import Settings
    from .demo import DemoSetup
    from .population.life import LifeStream
    from .security.keys import KeyInfo
    from .store import Store

T = TypeVar("T")

app = typer.Typer(
    name="dcihub",
    help="DCI-conformant social protection registries: serve, demo, operate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        print(f"dcihub {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """dcihub: an open implementation of the Digital Convergence Initiative (DCI) standards."""


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where the demo keeps its store, keys and demo.json.")
    ] = Path("dcihub-demo"),
    people: Annotated[int, typer.Option(help="Size of the synthetic population.", min=10)] = 10_000,
    seed: Annotated[
        int, typer.Option(help="Seed of the synthetic population (same seed, same data).")
    ] = 20260101,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    events_per_minute: Annotated[
        float,
        typer.Option(
            "--events-per-minute",
            min=0,
            help="Play a stream of life events (deaths, births, marriages, new households, "
            "disability, enrolment and employment changes) at this rate, recorded like "
            "`dcihub record` so subscribers are notified; deterministic given --seed. 0: none.",
        ),
    ] = 0,
    store_url: Annotated[
        str | None,
        typer.Option(
            "--store-url",
            metavar="URL",
            help="Build and serve the demo on this store (e.g. "
            "postgresql+psycopg://user@host/db) instead of DIR/demo.db.",
        ),
    ] = None,
) -> None:
    """Build a synthetic country (once) and serve all six registries over it.

    Serves the Social Registry, CRVS, Disability, Farmer and Integrated Beneficiary registries
    and the Employment Support System, the token endpoint, JWKS and console, and writes
    DIR/demo.json (base URLs, demo partner credentials, sample identifiers). Restarted on a
    store that holds the same country (people, seed), it generates nothing. With
    --events-per-minute, life goes on in the country while it is served."""
    from .demo import prepare_demo, write_demo_json
    from .server.factory import build_app

    started = time.perf_counter()
    console.print(f"[bold]dcihub demo[/bold]: {people:,} people (seed {seed}) in {data_dir}/")

    from .store.migrate import StoreError

    try:
        with population_progress() as progress:
            setup = prepare_demo(
                data_dir, host, port, people, seed, progress=progress, store_url=store_url
            )
    except StoreError as exc:
        raise _fail(f"{exc} (or give the demo a new --data-dir)") from None
    except Exception as exc:  # noqa: BLE001 - database down, refused login, ...
        shown = _shown(store_url) if store_url else str(data_dir)
        raise _fail(f"cannot build the demo in {shown}: {_first_line(exc)}") from None
    for line in setup.upgraded:
        console.print(f"  store upgraded: {line}", highlight=False, markup=False)
    if not setup.built_now:
        console.print("  population already built; reusing it")
    fastapi_app, info = build_app(setup.settings, setup.store, demo_info=setup.info)
    path = write_demo_json(data_dir, info)
    console.print(f"  ready in {time.perf_counter() - started:.1f}s; wrote {path}")
    _print_demo_help(info)
    stream = _life_stream(setup, seed, events_per_minute) if events_per_minute else None
    try:
        _serve(fastapi_app, host, port, log_level, setup.settings.limits.keep_alive_timeout)
    finally:
        if stream is not None:
            stream.stop()


def _life_stream(setup: DemoSetup, seed: int, events_per_minute: float) -> LifeStream:
    """Start the demo's stream of life events: a line per event, or at rates above 120 a
    minute a running count every 10 seconds."""
    import threading

    from .population.life import LifeEvent, LifeStream

    lock = threading.Lock()
    window = {"events": 0, "notifications": 0, "since": time.monotonic()}

    def show(event: LifeEvent) -> None:
        if events_per_minute <= 120:
            console.print(f"  {event.line()}", soft_wrap=True, highlight=False, markup=False)
            return
        with lock:
            window["events"] += 1
            window["notifications"] += event.notifications
            if time.monotonic() - window["since"] < 10:
                return
            console.print(
                f"  life events: {event.number:,} so far; {window['events']} in the last "
                f"{time.monotonic() - window['since']:.0f}s, notifications queued: "
                f"{window['notifications']} (latest: {event.summary})",
                soft_wrap=True,
                highlight=False,
                markup=False,
            )
            window.update(events=0, notifications=0, since=time.monotonic())

    stream = LifeStream(
        setup.store, seed, events_per_minute, list(setup.settings.registries), on_event=show
    )
    console.print(
        f"  life events: {events_per_minute:g} a minute (seed {seed}); subscribe to watch "
        "them: see docs/subscriptions.md, 'Watching live notifications'",
        highlight=False,
        markup=False,
    )
    return stream.start()


def _print_demo_help(info: dict) -> None:
    base = info["base_url"]
    # the first registry served whose demo population has a known identifier
    registry = next(
        (r for r in info["registries"] if (info["samples"].get(r) or {}).get("identifiers")),
        None,
    )
    if registry is None:
        return
    url = info["registries"][registry]
    sample = info["samples"][registry]["identifiers"][0]
    console.print(f"\n  registries: {', '.join(info['registries'])}  (API docs: {base}/docs)")
    if info.get("client_id"):
        console.print(
            "  get a token:\n"
            f"    TOKEN=$(curl -s -X POST {info['token_url']} -d grant_type=client_credentials "
            f"-d client_id={info['client_id']} -d client_secret={info['client_secret']} "
            "| python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')",
            soft_wrap=True,
            highlight=False,
            markup=False,
        )
    console.print(
        f"  search the {registry} registry by {sample['type']} (the demo partner may send "
        "unsigned requests):\n"
        f"    curl -s -X POST {url}/registry/sync/search -H 'content-type: application/json' "
        + ('-H "authorization: Bearer $TOKEN" ' if info.get("client_id") else "")
        + '-d \'{"header": {"message_id": "\'m-$RANDOM\'", "message_ts": '
        '"\'$(date -u +%Y-%m-%dT%H:%M:%SZ)\'", "action": "search", "sender_id": '
        f'"{info.get("sender_id", "spmis.demo")}", "total_count": 1}}, "message": '
        '{"transaction_id": "t1", "search_request": [{"reference_id": "r1", '
        '"timestamp": "2026-01-01T00:00:00Z", "search_criteria": {"query_type": '
        f'"idtype-value", "query": {{"type": "{sample["type"]}", "value": '
        f'"{sample["value"]}"}}}}}}]}}}}\'\n',
        soft_wrap=True,
        highlight=False,
        markup=False,
    )


def _serve(
    fastapi_app: FastAPI, host: str, port: int, log_level: str, keep_alive: float = 5.0
) -> None:
    import uvicorn

    uvicorn.run(
        fastapi_app,
        host=host,
        port=port,
        log_level=log_level,  # type: ignore[arg-type]
        access_log=log_level == "debug",
        timeout_keep_alive=int(keep_alive),
    )


@app.command()
def serve(
    config: Annotated[
        Path,
        typer.Option(
            "--config", "-c", help="Configuration file (YAML).", exists=True, dir_okay=False
        ),
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="API processes (uvicorn workers).", min=1)] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the registries of a configuration file (store URL, registries, partners, keys)."""
    import os

    import uvicorn

    from .config import ConfigError, load_settings

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    _prepare_store(settings, config)
    _prepare_security(settings)
    os.environ["DCIHUB_CONFIG"] = str(config.resolve())
    uvicorn.run(
        "dcihub.server.factory:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=log_level == "debug",
        timeout_keep_alive=int(settings.limits.keep_alive_timeout),
    )


def _prepare_security(settings: Settings) -> None:
    """Load (or make) the node's keys and read the partner file before serving, so that an
    unusable key directory or partner file stops here with one line naming the fix."""
    from .security.errors import SecurityError
    from .server.factory import load_keys, load_partners

    if not settings.security.enabled:
        return
    try:
        load_keys(settings)
        load_partners(settings)
    except SecurityError as exc:
        raise _fail(exc.message) from None


def _prepare_store(settings: Settings, config: Path) -> None:
    """Before serving: an empty store is created at head, one that is behind is refused with one
    line naming the upgrade command (upgraded instead with `store_auto_upgrade: true`), and a
    store that cannot be used stops here too (wrong URL, database down)."""
    from .store.migrate import StoreBehind, StoreError

    store = _open_store(settings.store_url)
    try:
        report = store.prepare(settings.store_auto_upgrade)
    except StoreBehind as exc:
        raise _fail(
            f"{exc}: run `dcihub store upgrade --config {config}` first (or set "
            "store_auto_upgrade: true in the configuration)"
        ) from None
    except StoreError as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - database down, refused login, ...
        raise _fail(
            f"cannot use the store {_shown(settings.store_url)}: {_first_line(exc)}"
        ) from None
    finally:
        store.dispose()
    if report is not None and report.before.state != "empty":
        for line in report.done:
            console.print(f"store upgraded: {line}", highlight=False, markup=False)


def _open_store(url: str) -> Store:
    from .store import Store

    try:
        return Store(url)
    except Exception as exc:  # noqa: BLE001 - sqlalchemy raises ArgumentError and others
        raise _fail(f"store_url {url!r} is not a database URL: {_first_line(exc)}") from None


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _first_line(exc: BaseException) -> str:
    origin = getattr(exc, "orig", None) or exc
    lines = str(origin).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


@app.command()
def worker(
    config: Annotated[
        Path,
        typer.Option(
            "--config", "-c", help="Configuration file (YAML).", exists=True, dir_okay=False
        ),
    ],
) -> None:
    """Run a delivery worker (async work and callbacks) apart from the API processes."""
    import anyio

    from .config import ConfigError, load_settings
    from .server.factory import build_worker

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    _prepare_store(settings, config)
    _prepare_security(settings)
    delivery_worker = build_worker(settings)
    console.print(f"dcihub worker on {settings.store_url.split('@')[-1]} (Ctrl-C to stop)")
    try:
        anyio.run(delivery_worker.run)
    except KeyboardInterrupt:
        pass


# ---------------------------------------------------------------------------------------------
# Operator commands: partners, keys, audit (the work is in admin.py; here: parse, call, print)

partners_app = typer.Typer(
    help="Manage the partner registry (security.partners_file): who may call this node, with "
    "which credentials, keys, scopes and callbacks.",
    no_args_is_help=True,
)
keys_app = typer.Typer(
    help="This node's signing and encryption keys (security.key_dir): list, rotate, JWKS.",
    no_args_is_help=True,
)
audit_app = typer.Typer(
    help="The hash-chained audit trail in the configured store: verify, show.",
    no_args_is_help=True,
)
store_app = typer.Typer(
    help="The store: where it stands against this dcihub (status) and upgrading it in place.",
    no_args_is_help=True,
)
app.add_typer(partners_app, name="partners")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(store_app, name="store")

AdminConfig = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Configuration file (YAML), the one `dcihub serve` reads. Default: $DCIHUB_CONFIG, "
        "else the demo's node (./dcihub-demo/dcihub.yaml) when run next to it.",
        dir_okay=False,
        envvar="DCIHUB_CONFIG",
        show_envvar=False,
    ),
]

DEMO_CONFIG_PATH = Path("dcihub-demo") / "dcihub.yaml"


def find_config(config: Path | None) -> Path:
    """The configuration an operator command works on: --config / $DCIHUB_CONFIG, else the
    demo's node next to the current directory."""
    if config is not None:
        return config
    if DEMO_CONFIG_PATH.exists():
        return DEMO_CONFIG_PATH
    raise _fail(
        "no configuration: pass --config FILE (the file `dcihub serve` reads), set "
        "DCIHUB_CONFIG, or run this next to a dcihub-demo/ directory made by `dcihub demo`"
    )


class SignatureProfile(StrEnum):
    jws_detached = "jws-detached"
    jws_compact = "jws-compact"
    http_sig_ed25519 = "http-sig-ed25519"


class Clearable(StrEnum):
    name = "name"
    scopes = "scopes"
    callback_prefixes = "callback-prefixes"
    callback_base = "callback-base"
    jwks = "jwks"
    jwks_url = "jwks-url"
    fields = "fields"
    consent_purposes = "consent-purposes"
    rate_limits = "rate-limits"
    callback_auth = "callback-auth"


OptName = Annotated[str | None, typer.Option("--name", help="A readable name of the partner.")]
OptScope = Annotated[
    list[str] | None,
    typer.Option(
        "--scope",
        metavar="REGISTRY:ACTION",
        help="What the partner may call, e.g. crvs:search, crvs:search,subscribe, crvs:* or *:search "
        "(repeat for several registries; replaces all scopes on update).",
    ),
]
OptCallback = Annotated[
    list[str] | None,
    typer.Option(
        "--callback-prefix",
        metavar="URL",
        help="A URL prefix the partner may give as sender_uri for callbacks (repeatable; host:* "
        "allows any port; replaces all prefixes on update).",
    ),
]
OptCallbackBase = Annotated[
    str | None,
    typer.Option(
        "--callback-base",
        metavar="URL",
        help="Where callbacks go when a request has no sender_uri: URL + the standard path "
        "(/registry/on-search, /registry/notify, ...); must be under a callback prefix.",
    ),
]
OptJwksUrl = Annotated[
    str | None,
    typer.Option(
        "--jwks-url", metavar="URL", help="Where the partner publishes its public keys (JWKS)."
    ),
]
OptJwksFile = Annotated[
    Path | None,
    typer.Option(
        "--jwks-file",
        metavar="FILE",
        dir_okay=False,
        help="A file with the partner's public JWK set, registered inline.",
    ),
]
OptGenerate = Annotated[
    Path | None,
    typer.Option(
        "--generate-keys",
        metavar="PATH",
        dir_okay=False,
        help="Make a signing and an encryption key pair for the partner, register the public "
        "keys and write the private JWK set to PATH (mode 0600; PATH must not exist).",
    ),
]
OptFields = Annotated[
    list[str] | None,
    typer.Option(
        "--fields",
        metavar="REGISTRY:PATH,PATH",
        help="Limit the record fields the partner receives from a registry, e.g. "
        "crvs:identifier,name.given_name (repeatable; a registry not named: all fields; "
        "replaces all limits on update).",
    ),
]
OptProfile = Annotated[
    SignatureProfile | None,
    typer.Option(
        "--signature-profile",
        help="How this node signs what it sends to the partner (default on add: jws-detached).",
    ),
]
OptSigned = Annotated[
    bool | None,
    typer.Option(
        "--signature-required/--no-signature-required",
        help="Whether the partner's requests must be signed (default on add: required); a "
        "signature that is sent is always verified (unless a gateway verifies it: "
        "--signature-verified-by-gateway).",
    ),
]
OptEncrypted = Annotated[
    bool | None,
    typer.Option(
        "--require-encryption/--no-require-encryption",
        help="Whether the partner's requests must be encrypted (default on add: no).",
    ),
]
OptEncryptReplies = Annotated[
    bool | None,
    typer.Option(
        "--encrypt-replies/--no-encrypt-replies",
        help="Encrypt replies and callbacks to the partner (default on add: no).",
    ),
]
OptConsent = Annotated[
    list[str] | None,
    typer.Option(
        "--consent-purpose",
        metavar="CODE",
        help="A purpose code the partner may claim in consent (repeatable; replaces the list on "
        "update).",
    ),
]
OptPrivate = Annotated[
    bool | None,
    typer.Option(
        "--allow-private-callbacks/--no-allow-private-callbacks",
        help="Allow callbacks to loopback and private addresses (default on add: refused).",
    ),
]
OptRate = Annotated[
    float | None,
    typer.Option(
        "--requests-per-second",
        metavar="N",
        help="DCI requests per second the partner may send to each API process (default: the "
        "node's limits.partner_requests_per_second); past it: 429 with Retry-After.",
    ),
]
OptDaily = Annotated[
    int | None,
    typer.Option(
        "--requests-per-day",
        metavar="N",
        help="DCI requests the partner may send per UTC day, over all API processes (default: "
        "the node's limits.partner_requests_per_day); past it: 429 with Retry-After.",
    ),
]
OptGateway = Annotated[
    bool | None,
    typer.Option(
        "--signature-verified-by-gateway/--no-signature-verified-by-gateway",
        help="The partner's messages reach this node only through a gateway that verifies "
        "their signatures (X-Road security server, mTLS proxy): do not verify them here "
        "(default on add: verified here). Audit rows then say 'not verified (partner policy)'.",
    ),
]
OptTokenUrl = Annotated[
    str | None,
    typer.Option(
        "--token-url",
        metavar="URL",
        help="The partner's OAuth2 token endpoint, used to get tokens for callbacks to it.",
    ),
]
OptCbClient = Annotated[
    str | None,
    typer.Option(
        "--callback-client-id", metavar="ID", help="This node's client id at the partner."
    ),
]
OptCbSecret = Annotated[
    str | None,
    typer.Option(
        "--callback-client-secret",
        metavar="env:NAME",
        help="This node's client secret at the partner, read from environment variable NAME on "
        "the node.",
    ),
]


def _out() -> Console:
    """The standard output console (made per command, so that it follows COLUMNS)."""
    return Console(highlight=False)


def _fail(message: str, code: int = 2) -> typer.Exit:
    from rich.markup import escape

    one_line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    console.print(f"[red]error:[/red] {escape(one_line)}", soft_wrap=True, highlight=False)
    return typer.Exit(code)


def _note(message: str, kind: str = "note") -> None:
    from rich.markup import escape

    colour = "yellow" if kind == "warning" else "dim"
    console.print(
        f"[{colour}]{kind}:[/{colour}] {escape(message)}", soft_wrap=True, highlight=False
    )


def _settings(config: Path | None) -> Settings:
    from .admin import AdminError, load_config

    try:
        return load_config(find_config(config))
    except AdminError as exc:
        raise _fail(str(exc)) from None


def _changes(**options: object) -> PartnerChanges:
    from .admin import PartnerChanges

    profile = options.pop("signature_profile")
    clear = cast("list[Enum]", options.pop("clear", None) or [])
    return PartnerChanges(
        signature_profile=profile.value if isinstance(profile, Enum) else None,
        clear=[c.value for c in clear],
        **options,  # type: ignore[arg-type]
    )


def _print_partner_result(result: PartnerResult, verb: str) -> None:
    from rich.markup import escape

    out = _out()
    partner = result.partner
    out.print(
        f"{verb} partner [bold]{escape(partner.sender_id)}[/bold] "
        f"(client_id {escape(partner.client_id or '-')}) in {escape(str(result.path))}",
        soft_wrap=True,
    )
    if result.client_secret is not None:
        out.print("client secret (shown once; only its hash is stored):", soft_wrap=True)
        out.print(f"  {result.client_secret}", soft_wrap=True, markup=False)
    if result.key_file is not None:
        out.print(
            f"the partner's private keys (signing + encryption): "
            f"{escape(str(result.key_file))} (mode 0600): give this file to the partner "
            "over a safe channel and keep no copy",
            soft_wrap=True,
        )
    for warning in result.warnings:
        _note(warning, "warning")
    for note in result.notes:
        _note(note)
    from .admin import PARTNERS_NOTE

    _note(PARTNERS_NOTE)


def _call(fn: Callable[..., T], *args: object) -> T:
    from .admin import AdminError

    try:
        return fn(*args)
    except AdminError as exc:
        raise _fail(str(exc)) from None


@partners_app.command("list")
def partners_list(config: AdminConfig = None) -> None:
    """List the registered partners: sender_id, name, client_id, scopes, callback prefixes,
    signature profile, signed/encrypted requirements, field restrictions."""
    from rich.table import Table

    from .admin import load_partners, partner_row, partners_file

    settings = _settings(config)
    registry = _call(load_partners, settings)
    if not len(registry):
        _out().print(f"no partners in {partners_file(settings)}", soft_wrap=True, markup=False)
        return
    rows = [partner_row(p) for p in registry]
    table = Table(title=f"partners ({partners_file(settings)})", title_justify="left")
    for column in rows[0]:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row.values())
    _out().print(table)


@partners_app.command("show")
def partners_show(
    sender_id: Annotated[str, typer.Argument(help="The partner's sender_id.")],
    config: AdminConfig = None,
) -> None:
    """Show every setting of one partner (secrets only as set / not set)."""
    from rich.table import Table

    from .admin import load_partners, partner_details, partners_file

    settings = _settings(config)
    registry = _call(load_partners, settings)
    partner = registry.get(sender_id)
    if partner is None:
        raise _fail(f"no partner with sender_id {sender_id!r} in {partners_file(settings)}")
    table = Table(show_header=False, box=None)
    table.add_column("setting", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in partner_details(partner):
        table.add_row(name, value)
    _out().print(table)


@partners_app.command("add")
def partners_add(
    sender_id: Annotated[str, typer.Argument(help="The partner's DCI sender_id.")],
    client_id: Annotated[
        str, typer.Option("--client-id", metavar="ID", help="The partner's OAuth2 client id.")
    ],
    name: OptName = None,
    scope: OptScope = None,
    callback_prefix: OptCallback = None,
    callback_base: OptCallbackBase = None,
    jwks_url: OptJwksUrl = None,
    jwks_file: OptJwksFile = None,
    generate_keys: OptGenerate = None,
    fields: OptFields = None,
    signature_profile: OptProfile = None,
    signature_required: OptSigned = None,
    require_encryption: OptEncrypted = None,
    encrypt_replies: OptEncryptReplies = None,
    consent_purpose: OptConsent = None,
    allow_private_callbacks: OptPrivate = None,
    signature_verified_by_gateway: OptGateway = None,
    requests_per_second: OptRate = None,
    requests_per_day: OptDaily = None,
    token_url: OptTokenUrl = None,
    callback_client_id: OptCbClient = None,
    callback_client_secret: OptCbSecret = None,
    config: AdminConfig = None,
) -> None:
    """Register a partner and generate its client secret, printed once (stored hashed only).

    Give its public keys with --jwks-url or --jwks-file, or make a key pair for it with \
--generate-keys PATH. Running nodes pick the partner up within seconds."""
    from .admin import add_partner

    changes = _changes(
        name=name,
        client_id=client_id,
        scopes=scope,
        callback_prefixes=callback_prefix,
        callback_base=callback_base,
        jwks_url=jwks_url,
        jwks_file=jwks_file,
        generate_keys=generate_keys,
        fields=fields,
        signature_profile=signature_profile,
        require_signature=signature_required,
        require_encryption=require_encryption,
        encrypt_replies=encrypt_replies,
        consent_purposes=consent_purpose,
        allow_private_callbacks=allow_private_callbacks,
        signature_verified_by_gateway=signature_verified_by_gateway,
        requests_per_second=requests_per_second,
        requests_per_day=requests_per_day,
        token_url=token_url,
        callback_client_id=callback_client_id,
        callback_client_secret=callback_client_secret,
    )
    result = _call(add_partner, _settings(config), sender_id, changes)
    _print_partner_result(result, "added")


@partners_app.command("update")
def partners_update(
    sender_id: Annotated[str, typer.Argument(help="The partner's sender_id.")],
    client_id: Annotated[
        str | None,
        typer.Option(
            "--client-id", metavar="ID", help="A new OAuth2 client id (the secret stays)."
        ),
    ] = None,
    name: OptName = None,
    scope: OptScope = None,
    callback_prefix: OptCallback = None,
    callback_base: OptCallbackBase = None,
    jwks_url: OptJwksUrl = None,
    jwks_file: OptJwksFile = None,
    generate_keys: OptGenerate = None,
    fields: OptFields = None,
    signature_profile: OptProfile = None,
    signature_required: OptSigned = None,
    require_encryption: OptEncrypted = None,
    encrypt_replies: OptEncryptReplies = None,
    consent_purpose: OptConsent = None,
    allow_private_callbacks: OptPrivate = None,
    signature_verified_by_gateway: OptGateway = None,
    requests_per_second: OptRate = None,
    requests_per_day: OptDaily = None,
    token_url: OptTokenUrl = None,
    callback_client_id: OptCbClient = None,
    callback_client_secret: OptCbSecret = None,
    clear: Annotated[
        list[Clearable] | None,
        typer.Option(
            "--clear",
            metavar="SETTING",
            help="Reset a setting to its default (repeatable): name, scopes, callback-prefixes, "
            "jwks, jwks-url, fields, consent-purposes, rate-limits (back to the node's limits), "
            "or callback-auth (token_url and the callback client id and secret).",
        ),
    ] = None,
    config: AdminConfig = None,
) -> None:
    """Change the given settings of a partner; settings not given stay as they are.

    The client secret is kept (use set-secret for a new one). Running nodes pick the change \
up within seconds."""
    from .admin import update_partner

    changes = _changes(
        name=name,
        client_id=client_id,
        scopes=scope,
        callback_prefixes=callback_prefix,
        callback_base=callback_base,
        jwks_url=jwks_url,
        jwks_file=jwks_file,
        generate_keys=generate_keys,
        fields=fields,
        signature_profile=signature_profile,
        require_signature=signature_required,
        require_encryption=require_encryption,
        encrypt_replies=encrypt_replies,
        consent_purposes=consent_purpose,
        allow_private_callbacks=allow_private_callbacks,
        signature_verified_by_gateway=signature_verified_by_gateway,
        requests_per_second=requests_per_second,
        requests_per_day=requests_per_day,
        token_url=token_url,
        callback_client_id=callback_client_id,
        callback_client_secret=callback_client_secret,
        clear=clear,
    )
    result = _call(update_partner, _settings(config), sender_id, changes)
    _print_partner_result(result, "updated")


@partners_app.command("remove")
def partners_remove(
    sender_id: Annotated[str, typer.Argument(help="The partner's sender_id.")],
    config: AdminConfig = None,
) -> None:
    """Remove a partner from the partner file; within seconds running nodes refuse its
    tokens."""
    from .admin import PARTNERS_NOTE, remove_partner

    path = _call(remove_partner, _settings(config), sender_id)
    _out().print(f"removed partner {sender_id} from {path}", soft_wrap=True, markup=False)
    _note(PARTNERS_NOTE)


@partners_app.command("set-secret")
def partners_set_secret(
    sender_id: Annotated[str, typer.Argument(help="The partner's sender_id.")],
    config: AdminConfig = None,
) -> None:
    """Give a partner a new client secret, printed once; within seconds running nodes accept
    only the new one (access tokens issued before stay valid until they expire)."""
    from .admin import reset_secret

    result = _call(reset_secret, _settings(config), sender_id)
    _print_partner_result(result, "new secret for")


@keys_app.command("list")
def keys_list(config: AdminConfig = None) -> None:
    """List this node's keys: kid, use, alg, created, status (current / retiring / expired).

    Reads the key directory only; keys are created when the node first starts."""
    from rich.table import Table

    from .admin import key_dir, list_keys

    settings = _settings(config)
    keys = _call(list_keys, settings)
    if not keys:
        _out().print(
            f"no keys in {key_dir(settings)} yet: they are created when the node "
            "first starts (or by `dcihub keys rotate`)",
            soft_wrap=True,
            markup=False,
        )
        return
    overlap = timedelta(days=settings.security.key_overlap_days)
    table = Table(title=f"keys ({key_dir(settings)})", title_justify="left")
    for column in ("kid", "use", "alg", "created", "status"):
        table.add_column(column, overflow="fold")
    for key in keys:
        status = key.status
        if key.retired_at is not None and status == "retiring":
            status = f"retiring until {_when(key.retired_at + overlap)}"
        table.add_row(key.kid, key.use, key.alg, _when(key.created), status)
    _out().print(table)


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@keys_app.command("rotate")
def keys_rotate(config: AdminConfig = None) -> None:
    """Make new current keys; the old ones stay published, and usable to verify and decrypt,
    for security.key_overlap_days. Running nodes switch to the new keys within seconds."""
    from .admin import KEYS_NOTE, rotate_keys

    rotation = _call(rotate_keys, _settings(config))
    out = _out()

    def describe(key: KeyInfo) -> str:
        return f"  {key.kid}  {key.use} {key.alg}"

    if rotation.first:
        out.print(
            f"there were no keys in {rotation.key_dir}; created the first ones:",
            soft_wrap=True,
            markup=False,
        )
        for key in rotation.created:
            out.print(describe(key), soft_wrap=True, markup=False)
        return
    until = rotation.retiring_until
    if until is not None and until > datetime.now(UTC):
        out.print(f"retired (still published until {_when(until)}):", soft_wrap=True, markup=False)
    else:
        out.print(
            "retired (expired at once: security.key_overlap_days is 0):",
            soft_wrap=True,
            markup=False,
        )
    for key in rotation.retired:
        out.print(describe(key), soft_wrap=True, markup=False)
    out.print("new current keys:", soft_wrap=True, markup=False)
    for key in rotation.created:
        out.print(describe(key), soft_wrap=True, markup=False)
    _note(KEYS_NOTE)


@keys_app.command("jwks")
def keys_jwks(config: AdminConfig = None) -> None:
    """Print the public JWKS this node publishes at /.well-known/jwks.json (current and
    retiring keys) as JSON."""
    import json

    from .admin import public_jwks

    jwks = _call(public_jwks, _settings(config))
    print(json.dumps(jwks, indent=2))


@audit_app.command("verify")
def audit_verify(config: AdminConfig = None) -> None:
    """Walk the audit trail's hash chain in the configured store; name every row that was
    edited, deleted or inserted (exit status 1 if any)."""
    from .admin import verify_audit

    count, problems = _call(verify_audit, _settings(config))
    out = _out()
    if not problems:
        out.print(f"{count} rows, chain intact", soft_wrap=True, markup=False)
        return
    for problem in problems:
        out.print(
            f"seq {problem.seq}: {problem.kind}: {problem.message}", soft_wrap=True, markup=False
        )
    out.print(
        f"{count} rows, {len(problems)} problem{'s' if len(problems) != 1 else ''}: "
        "the chain is broken",
        soft_wrap=True,
        markup=False,
    )
    raise typer.Exit(1)


@audit_app.command("show")
def audit_show(
    partner: Annotated[
        str | None,
        typer.Option("--partner", metavar="SENDER_ID", help="Only this partner's exchanges."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="WHEN",
            help="Only exchanges from then on: a date (2026-01-01, UTC), a time "
            "(2026-01-01T12:00:00Z) or a duration back from now (30m, 24h, 7d).",
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=0, help="Show the most recent N matching rows (0: all).")
    ] = 100,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per row (JSON Lines).")
    ] = False,
    config: AdminConfig = None,
) -> None:
    """Print the audit trail, oldest first: time, direction, partner, registry, action,
    message_id, transaction_id, status/outcome, signature verdict, number of records returned
    (or, for a callback, sent)."""
    import json

    from rich.table import Table

    from .admin import audit_summary, audit_trail, parse_since

    settings = _settings(config)
    since_ts = _call(parse_since, since) if since else None
    rows = [
        audit_summary(r) for r in _call(audit_trail, settings, partner, since_ts, limit or None)
    ]
    if as_json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return
    if not rows:
        _out().print("no audit rows match", soft_wrap=True, markup=False)
        return
    table = Table()
    for column in (
        "seq",
        "time",
        "dir",
        "partner",
        "registry",
        "action",
        "message_id",
        "transaction_id",
        "status",
        "signature",
        "records",
    ):
        table.add_column(column, overflow="fold")
    for row in rows:
        status = "-" if row["status"] is None else str(row["status"])
        table.add_row(
            str(row["seq"]),
            row["time"],
            row["direction"] or "-",
            row["partner"] or "-",
            row["registry"] or "-",
            row["action"] or "-",
            row["message_id"] or "-",
            row["transaction_id"] or "-",
            f"{status} {row['outcome'] or '-'}",
            row["signature"] or "-",
            str(row["records"]),
        )
    _out().print(table)


StoreUrl = Annotated[
    str | None,
    typer.Option(
        "--store-url",
        metavar="URL",
        help="The store's SQLAlchemy URL (sqlite:///path.db, postgresql+psycopg://user@host/db), "
        "instead of the configuration's store_url.",
    ),
]


def _store_of(config: Path | None, store_url: str | None) -> tuple[Store, str]:
    """The store named by --store-url, else by the configuration's store_url; and how to
    name it in a hint."""
    if store_url is not None:
        return _open_store(store_url), f"--store-url {store_url}"
    path = find_config(config)
    return _open_store(_settings(path).store_url), f"--config {path}"


@store_app.command("status")
def store_status(config: AdminConfig = None, store_url: StoreUrl = None) -> None:
    """Print the store's revision, this dcihub's head revision, whether the store is behind,
    and the changes an upgrade would make (exit status 1 if it is behind)."""
    from .store.migrate import StoreError

    store, named = _store_of(config, store_url)
    try:
        found = store.status()
    except StoreError as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - database down, refused login, ...
        raise _fail(f"cannot read the store {_shown(store.url)}: {_first_line(exc)}") from None
    finally:
        store.dispose()
    out = _out()
    revision = {
        "empty": "none (an empty store)",
        "legacy": "none: made before migrations (schema version 2), to be stamped at "
        f"{found.revision}",
    }.get(found.state, found.revision)
    out.print(f"store     {found.url}", soft_wrap=True, markup=False)
    out.print(f"revision  {revision}", soft_wrap=True, markup=False)
    out.print(f"head      {found.head}", soft_wrap=True, markup=False)
    if not found.behind:
        out.print("state     up to date", soft_wrap=True, markup=False)
    else:
        out.print(f"state     behind: {found.summary()}", soft_wrap=True, markup=False)
        out.print("pending:", soft_wrap=True, markup=False)
        for line in [f"revision {r}" for r in found.revisions] + found.changes:
            out.print(f"  {line}", soft_wrap=True, markup=False)
    for note in found.notes:
        _note(note)
    if found.behind:
        _note(f"`dcihub store upgrade {named}` applies them")
        raise typer.Exit(1)


@store_app.command("upgrade")
def store_upgrade(config: AdminConfig = None, store_url: StoreUrl = None) -> None:
    """Upgrade the store in place: apply the pending revisions of the operational tables, then
    add the registry tables, columns and indexes the profiles make and fill them from the
    stored records. Nothing is dropped. One process upgrades at a time; the others wait."""
    from .store.migrate import StoreError

    store, _named = _store_of(config, store_url)
    try:
        report = store.upgrade()
    except StoreError as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - database down, a record that cannot be read, ...
        raise _fail(f"cannot upgrade the store {_shown(store.url)}: {_first_line(exc)}") from None
    finally:
        store.dispose()
    out = _out()
    after = report.after
    if not report.done:
        out.print(
            f"{after.url} is up to date (revision {after.revision}); nothing to do",
            soft_wrap=True,
            markup=False,
        )
    else:
        out.print(f"upgraded {after.url}:", soft_wrap=True, markup=False)
        for line in report.done:
            out.print(f"  {line}", soft_wrap=True, markup=False)
        out.print(f"now: {after.summary()}", soft_wrap=True, markup=False)
    for note in after.notes:
        _note(note)


# ---------------------------------------------------------------------------------------------
# Recording changes of registry data; undelivered callbacks and notifications


@app.command("record")
def record(
    change: Annotated[str, typer.Argument(help="What happened, e.g. death, birth, member-join.")],
    registry: Annotated[
        str | None, typer.Argument(help="The registry, e.g. crvs (`record list`: optional).")
    ] = None,
    id_: Annotated[
        str | None, typer.Option("--id", metavar="TYPE=VALUE", help="The person (UIN=...).")
    ] = None,
    mother: Annotated[
        str | None, typer.Option(metavar="TYPE=VALUE", help="A mother (birth, adoption).")
    ] = None,
    father: Annotated[
        str | None, typer.Option(metavar="TYPE=VALUE", help="A father (birth, adoption).")
    ] = None,
    spouse: Annotated[
        str | None, typer.Option(metavar="TYPE=VALUE", help="A spouse (marriage, divorce).")
    ] = None,
    household: Annotated[str | None, typer.Option(metavar="HHID", help="A household.")] = None,
    programme: Annotated[str | None, typer.Option(metavar="ID", help="A programme.")] = None,
    status: Annotated[str | None, typer.Option(metavar="CODE", help="A new status code.")] = None,
    date_: Annotated[
        str | None, typer.Option("--date", metavar="YYYY-MM-DD", help="When (default today).")
    ] = None,
    place: Annotated[str | None, typer.Option(help="Where.")] = None,
    name: Annotated[
        str | None, typer.Option(help="A given name (a newborn, a new member).")
    ] = None,
    sex: Annotated[
        str | None, typer.Option(help="female, male, ... (a newborn, a registrant).")
    ] = None,
    birth_date: Annotated[
        str | None,
        typer.Option(
            metavar="YYYY-MM-DD",
            help="A registrant's birth date (registrations; default: the civil register's).",
        ),
    ] = None,
    config: AdminConfig = None,
) -> None:
    """Record a change of registry data: a birth, a death, a member joining a household, an
    enrolment status ... The change raises its events, so subscribers are notified (the
    node's worker delivers). `dcihub record list` names the changes of every registry."""
    from .store.changes import ChangeError, record_change

    settings = _settings(config)
    if change == "list":
        _list_record_changes(settings, registry)
        return
    if registry is None:
        raise _fail(f"give the registry: dcihub record {change} REGISTRY ...")
    store = _open_store(settings.store_url)
    options = {
        k: v
        for k, v in {
            "id": id_,
            "mother": mother,
            "father": father,
            "spouse": spouse,
            "household": household,
            "programme": programme,
            "status": status,
            "date": date_,
            "place": place,
            "name": name,
            "sex": sex,
            "birth_date": birth_date,
        }.items()
        if v
    }
    try:
        if registry not in settings.registries:
            raise ChangeError(
                f"this node does not serve a registry {registry!r}; it serves: "
                + ", ".join(settings.registries)
            )
        done = record_change(store, registry, change, options)
    except ChangeError as exc:
        raise _fail(str(exc)) from None
    finally:
        store.dispose()
    out = _out()
    for key, created in done.keys:
        out.print(f"{'created' if created else 'updated'} {key}", soft_wrap=True, markup=False)
    out.print(f"notifications queued: {done.notifications}", soft_wrap=True, markup=False)


def _list_record_changes(settings: Settings, registry: str | None) -> None:
    from .standard.profiles import PROFILES

    names = [registry] if registry else list(settings.registries)
    unknown = [n for n in names if n not in settings.registries]
    if unknown:
        raise _fail(
            f"this node does not serve a registry {unknown[0]!r}; it serves: "
            + ", ".join(settings.registries)
        )
    out = _out()
    for name in names:
        for change in PROFILES[name].record_changes:
            out.print(f"{name:<7} {change.name:<18} {change.summary}", soft_wrap=True, markup=False)


class DeliveryState(StrEnum):
    pending = "pending"
    failed = "failed"
    dead = "dead"


@app.command("deliveries")
def deliveries(
    partner: Annotated[str | None, typer.Option(metavar="SENDER_ID", help="One partner.")] = None,
    registry: Annotated[str | None, typer.Option(help="One registry.")] = None,
    state: Annotated[
        list[DeliveryState] | None,
        typer.Option(help="pending, failed (will be retried) or dead (repeatable; default all)."),
    ] = None,
    retry: Annotated[
        bool,
        typer.Option(
            "--retry", help="Try the listed deliveries again now, with a fresh count of attempts."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    config: AdminConfig = None,
) -> None:
    """List callbacks and notifications not delivered yet: pending, failed (retried with
    back-off) and dead (given up); --retry sends them again."""
    import json

    settings = _settings(config)
    store = _open_store(settings.store_url)
    states = tuple(s.value for s in state) if state else ("pending", "failed", "dead")
    try:
        with store.begin() as conn:
            rows = store.outbox.deliveries(conn, states, partner, registry)
            reset = store.outbox.retry_now(conn, [r["pk"] for r in rows]) if retry else 0
    finally:
        store.dispose()
    out = _out()
    for row in rows:
        if as_json:
            out.print(json.dumps(row, default=str), soft_wrap=True, markup=False)
            continue
        when = datetime.fromtimestamp(row["created_at"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        error = f"  {row['last_error'][:120]}" if row["last_error"] else ""
        out.print(
            f"{row['pk']:>7}  {row['state']:<7}  {row['action'] or '-':<14} "
            f"{row['registry'] or '-':<6} {row['sender_id'] or '-'}  attempts {row['attempts']}"
            f"  {when}  {row['target_url']}{error}",
            soft_wrap=True,
            markup=False,
        )
    if not rows and not as_json:
        out.print("no undelivered callbacks or notifications", soft_wrap=True, markup=False)
    if retry:
        _note(f"{reset} deliver{'y' if reset == 1 else 'ies'} will be tried again now")


# ---------------------------------------------------------------------------------------------
# Retention: purging what is kept no longer (docs/reliability.md)


@store_app.command("purge")
def store_purge(
    config: AdminConfig = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be purged; delete nothing.")
    ] = False,
) -> None:
    """Purge now what the configuration's `retention` keeps no longer: delivered and given-up
    outbox rows and finished transactions older than their retention (the worker does this
    every `retention.interval` seconds by itself). Rows still to do are never purged."""
    from .store.retention import Purged, purge

    path = find_config(config)
    settings = _settings(path)
    store = _open_store(settings.store_url)
    total = Purged()
    try:
        while True:
            with store.engine.connect() as conn:
                transaction = conn.begin()
                done = purge(store, conn, settings.retention)
                if dry_run:
                    transaction.rollback()
                else:
                    transaction.commit()
            total.delivered += done.delivered
            total.dead += done.dead
            total.transactions += done.transactions
            if dry_run or not done.full:
                break
    except Exception as exc:  # noqa: BLE001 - database down, refused login, ...
        raise _fail(f"cannot purge the store {_shown(store.url)}: {_first_line(exc)}") from None
    finally:
        store.dispose()
    verb = "would purge" if dry_run else "purged"
    more = " (at least; one batch counted)" if dry_run and done.full else ""
    _out().print(f"{verb} {total.summary()}{more}", soft_wrap=True, markup=False)


# Importing a country's own data (docs/import.md)


@app.command("import")
def import_(
    registry: Annotated[str, typer.Argument(help="The registry to import into, e.g. crvs.")],
    source: Annotated[
        str | None,
        typer.Argument(
            metavar="SOURCE",
            help="A CSV or JSON Lines file, or the SQLAlchemy URL of a database to query "
            "(default: the mapping's source.url).",
        ),
    ] = None,
    mapping: Annotated[
        Path,
        typer.Option(
            "--mapping", "-m", metavar="FILE", dir_okay=False, help="The mapping file (TOML)."
        ),
    ] = Path("mapping.toml"),
    query: Annotated[
        str | None,
        typer.Option(metavar="SQL", help="The query of a SQL source (instead of source.query)."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Records committed per transaction (resumable batches).")
    ] = 1000,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Continue an interrupted import after its last committed batch."
        ),
    ] = False,
    all_or_nothing: Annotated[
        bool,
        typer.Option(
            "--all-or-nothing", help="Commit nothing if any row is rejected (one transaction)."
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Map and validate every row, write nothing to the store."),
    ] = False,
    rejects: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            dir_okay=False,
            help="Where rejected rows are reported (.csv or .jsonl; default NAME.rejects.csv "
            "beside a file source NAME.csv, import.rejects.csv for a database).",
        ),
    ] = None,
    config: AdminConfig = None,
    store_url: StoreUrl = None,
) -> None:
    """Import records from a CSV file, a JSON Lines file or a SQL query, mapped into the
    registry's records by a mapping file. Rows that fail validation go to the rejects file with
    file, line, field and reason; the others are committed in batches. Re-running the same
    import updates records instead of duplicating them; every created or changed record raises
    its change event. Exit status: 0 every row imported, 1 some rows rejected (with
    --all-or-nothing: nothing committed), 2 nothing imported (bad mapping, source or store),
    130 interrupted (--resume continues)."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from .population.importer import (
        ImportError_,
        MappingError,
        Options,
        SourceError,
        Summary,
        load_mapping,
        open_source,
        run_import,
    )
    from .standard.profiles import PROFILES
    from .store.migrate import StoreBehind, StoreError

    profile = PROFILES.get(registry)
    if profile is None:
        raise _fail(f"unknown registry {registry!r}; known: {', '.join(PROFILES)}")
    if store_url is None:
        path = find_config(config)
        settings = _settings(path)
        if registry not in settings.registries:
            raise _fail(
                f"the node of {path} does not serve a registry {registry!r}; it serves: "
                + ", ".join(settings.registries)
            )
        store_url = settings.store_url
    try:
        plan = load_mapping(mapping, registry, profile)
        where = open_source(plan, source, query)
    except (MappingError, SourceError) as exc:
        raise _fail(str(exc)) from None
    if rejects is None:
        rejects = (
            Path(source).with_suffix(".rejects.csv")
            if source is not None and "://" not in source
            else Path("import.rejects.csv")
        )
    store = _open_store(store_url)
    target: Store | None = store
    try:
        if dry_run:
            if store.status().state == "empty":
                target = None  # nothing to compare with: every record would be created
        else:
            store.prepare(auto_upgrade=False)
    except StoreBehind as exc:
        store.dispose()
        raise _fail(f"{exc}: run `dcihub store upgrade` on it first") from None
    except StoreError as exc:
        store.dispose()
        raise _fail(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - database down, refused login, ...
        store.dispose()
        raise _fail(f"cannot use the store {_shown(store_url)}: {_first_line(exc)}") from None
    options = Options(batch_size, resume, all_or_nothing, dry_run, rejects)
    columns = [SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn()]
    if where.size is not None:
        columns += [DownloadColumn(), TimeRemainingColumn()]
    columns += [
        TextColumn("{task.fields[rows]:>10,} rows  {task.fields[rate]}"),
        TimeElapsedColumn(),
    ]
    started = time.perf_counter()
    summary = Summary()
    try:
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task(f"import {registry}", total=where.size, rows=0, rate="")

            def progress(now: Summary, position: int | None) -> None:
                elapsed = max(time.perf_counter() - started, 1e-6)
                bar.update(
                    task,
                    completed=position or 0,
                    rows=now.rows_read,
                    rate=f"{now.rows_read / elapsed:,.0f}/s",
                )

            summary = run_import(target, plan, where, options, progress)
    except KeyboardInterrupt:
        _note("interrupted: the batches committed so far stay; --resume continues after them")
        raise typer.Exit(130) from None
    except MappingError as exc:  # a column the mapping reads is not in the source
        raise _fail(str(exc)) from None
    except (SourceError, ImportError_) as exc:
        raise _fail(f"{exc} (batches committed before this stay; --resume continues)") from None
    except Exception as exc:  # noqa: BLE001 - the database went away, a constraint ...
        raise _fail(f"the import stopped: {_first_line(exc)}") from None
    finally:
        store.dispose()
    elapsed = time.perf_counter() - started
    out = _out()
    verb = "checked (dry run, nothing written)" if dry_run else "imported"
    out.print(
        f"{verb} {where.name} into {registry} ({plan.top.name} records) in {elapsed:.1f}s",
        soft_wrap=True,
        markup=False,
    )
    if summary.resumed_at:
        out.print(f"  resumed after  {summary.rows_skipped:,} rows", markup=False)
    out.print(f"  rows read      {summary.rows_read:,}", markup=False)
    out.print(f"  created        {summary.created:,}", markup=False)
    out.print(f"  updated        {summary.updated:,}", markup=False)
    out.print(f"  unchanged      {summary.unchanged:,}", markup=False)
    out.print(
        f"  rejected       {summary.rows_rejected:,} rows ({summary.records_rejected:,} records)"
        f"; report: {rejects}",
        soft_wrap=True,
        markup=False,
    )
    if not summary.committed:
        out.print("  nothing committed: --all-or-nothing and rows were rejected", markup=False)
    if resume and not summary.resumed_at:
        _note("no interrupted import of this source and mapping to resume: read from the start")
    if summary.records_rejected:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------------------
# The synthetic population (`dcihub population generate`) and `dcihub store stats`


@contextmanager
def population_progress() -> Iterator[Callable[[int, int], None]]:
    """A progress bar (people loaded, rate, ETA) for a population build, on stderr; shown only
    once a build starts (a reused store prints nothing)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("  building"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("people"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    task: list[TaskID] = []
    started = [0.0]

    def update(done: int, total: int) -> None:
        if not task:
            bar.start()
            started[0] = time.perf_counter()
            task.append(bar.add_task("people", total=total, rate=""))
        elapsed = time.perf_counter() - started[0]
        rate = f"{done / elapsed:,.0f}/s" if elapsed > 0 and done else ""
        bar.update(task[0], completed=done, rate=rate)

    try:
        yield update
    finally:
        if task:
            bar.stop()


population_app = typer.Typer(
    help="The synthetic country: generate a deterministic population into a store.",
    no_args_is_help=True,
)
app.add_typer(population_app, name="population")


@population_app.command("generate")
def population_generate(
    store_url: Annotated[
        str,
        typer.Option(
            "--store",
            "--store-url",
            metavar="URL",
            help="The store to fill (sqlite:///path.db, postgresql+psycopg://user@host/db); "
            "created or upgraded in place.",
        ),
    ],
    people: Annotated[int, typer.Option(help="Number of people.", min=1)] = 10_000,
    seed: Annotated[int, typer.Option(help="Seed (same seed and size, same data).")] = 20260101,
    as_of: Annotated[
        str, typer.Option("--as-of", metavar="YYYY-MM-DD", help="The country's 'today'.")
    ] = "2026-01-01",
    workers: Annotated[
        int | None,
        typer.Option(help="Processes generating blocks (default: one per core).", min=1),
    ] = None,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace", help="Drop what the store holds (every dcihub table) and build anew."
        ),
    ] = False,
    quality_errors: Annotated[
        float,
        typer.Option(
            "--quality-errors",
            metavar="RATE",
            min=0.0,
            max=0.5,
            help="Share of the records of every registry but the CRVS given a deliberate "
            "data-quality problem: a typo in a name, a missing birth date or a duplicate "
            "registration (default 0: a clean country).",
        ),
    ] = 0.0,
) -> None:
    """Generate the synthetic country block by block into a store, in bounded memory.

    The same people, seed and date always give the same records. A store that already holds
    this very population is left as it is; a store holding other records is refused unless
    --replace is given."""
    from datetime import date

    from .population.load import PopulationError, generate_into
    from .store.migrate import StoreError

    try:
        day = date.fromisoformat(as_of)
    except ValueError:
        raise _fail(f"--as-of {as_of!r} is not a date (YYYY-MM-DD)") from None
    store = _open_store(store_url)
    started = time.perf_counter()
    try:
        with population_progress() as progress:
            population, built = generate_into(
                store,
                people,
                seed,
                day,
                replace=replace,
                progress=progress,
                workers=workers,
                quality=quality_errors,
            )
    except (PopulationError, StoreError) as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - database down, refused login, disk full, ...
        raise _fail(f"cannot fill the store {_shown(store.url)}: {_first_line(exc)}") from None
    finally:
        store.dispose()
    out = _out()
    shown = _shown(store_url)
    if not built:
        out.print(
            f"{shown} already holds this population ({people:,} people, seed {seed}, as of "
            f"{day.isoformat()}); nothing to do",
            soft_wrap=True,
            markup=False,
        )
        return
    took = time.perf_counter() - started
    out.print(
        f"generated {people:,} people (seed {seed}, as of {day.isoformat()}) into {shown} "
        f"in {took:.1f}s",
        soft_wrap=True,
        markup=False,
    )
    for registry, count in population.counts.items():
        out.print(f"  {registry:<8} {count:>12,} records", markup=False)


@store_app.command("stats")
def store_stats_command(config: AdminConfig = None, store_url: StoreUrl = None) -> None:
    """Print, per registry and table, the row count and the size of the table and of its
    indexes (SQLite: the dbstat virtual table; PostgreSQL: pg_relation_size and
    pg_indexes_size), then the totals."""
    from rich.table import Table

    from .store.stats import store_stats

    store, _named = _store_of(config, store_url)
    try:
        found = store_stats(store)
    except Exception as exc:  # noqa: BLE001 - database down, refused login, ...
        raise _fail(f"cannot read the store {_shown(store.url)}: {_first_line(exc)}") from None
    finally:
        store.dispose()

    def size(n: int | None) -> str:
        if n is None:
            return "-"
        for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
            if n >= scale:
                return f"{n / scale:.1f} {unit}"
        return f"{n} B"

    table = Table("registry", "table", "rows", "table size", "index size", box=None)
    totals = [0, 0, 0]
    known = True
    for item in found:
        table.add_row(
            item.registry or "-",
            item.table,
            f"{item.rows:,}",
            size(item.table_bytes),
            size(item.index_bytes),
        )
        totals[0] += item.rows
        if item.table_bytes is None or item.index_bytes is None:
            known = False
        else:
            totals[1] += item.table_bytes
            totals[2] += item.index_bytes
    table.add_row(
        "total",
        "",
        f"{totals[0]:,}",
        size(totals[1] if known else None),
        size(totals[2] if known else None),
    )
    _out().print(f"store {_shown(store.url)}", soft_wrap=True, markup=False)
    _out().print(table)
    if not known:
        _note("this database does not report sizes (SQLite built without dbstat)")


# ---------------------------------------------------------------------------------------------
# The programme-side commands (search, subscribe, listen, txn-status, login): client_cli.py
from .client_cli import register as _register_client_commands  # noqa: E402

_register_client_commands(app)

# The conformance kit (conform server, conform client, conform requirements): conform_cli.py
from .conform_cli import register as _register_conform_commands  # noqa: E402

_register_conform_commands(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
