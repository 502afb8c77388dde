"""The programme-side commands of `dcihub`: search, subscribe, listen, txn-status, login.

They drive `dcihub.client` (the SDK) from a terminal, against any DCI registry — see
docs/cli.md. Registered on the main app by `register(app)` (cli.py), so that this module is all
there is to them.

Connection settings, for each member, from the first that gives it:

1. flags (`--url`, `--token-url`, `--client-id`, `--client-secret`, `--sender-id`, `--keys`, …);
2. the environment (`DCIHUB_URL`, `DCIHUB_TOKEN_URL`, `DCIHUB_CLIENT_ID`, … and the SDK's own
   `DCIHUB_CLIENT_BASE_URL`, …);
3. the profile written by `dcihub login` (`$DCIHUB_PROFILES`, else
   `~/.config/dcihub/profiles.toml`; one section per profile, named after the registry unless
   `--profile` says otherwise);
4. the demo: `./dcihub-demo/demo.json` (or `--demo FILE`), when no URL and no profile is given.

Every client error is one line on standard error, `error: …`: exit status 1 when the registry
(or the network) said no, 2 for a usage or configuration error (nothing was sent).
"""

import functools
import inspect
import json
import os
import re
import signal
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    import httpx

    from .client import (
        BatchResult,
        CallbackReceiver,
        ClientSettings,
        Notification,
        Query,
        Record,
        SearchResult,
        SubscribeResult,
        TxnStatusResult,
        UnsubscribeResult,
    )

__all__ = ["register", "parse_where", "parse_id", "profiles_path"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_DEMO = Path("dcihub-demo") / "demo.json"
CONNECTION = "Connection (flags > environment > `dcihub login` profile > the demo)"
OUTPUT = "Output"

errors = Console(stderr=True)


def _out() -> Console:
    return Console(highlight=False)


# ---------------------------------------------------------------------------------------------
# Errors: one line, never a traceback


class UsageError(Exception):
    """A bad option value (exit status 2)."""


def _fail(message: str, code: int) -> typer.Exit:
    one_line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    errors.print(f"[red]error:[/red] {escape(one_line)}", soft_wrap=True, highlight=False)
    return typer.Exit(code)


@contextmanager
def _one_line_errors() -> Iterator[None]:
    from .client import ConfigurationError, DCIClientError

    try:
        yield
    except (UsageError, ConfigurationError) as exc:
        raise _fail(str(exc), 2) from None
    except DCIClientError as exc:
        raise _fail(str(exc), 1) from None
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as exc:  # a defect, still shown as one line (DCIHUB_DEBUG=1: traceback)
        if os.environ.get("DCIHUB_DEBUG"):
            raise
        raise _fail(f"unexpected {type(exc).__name__}: {exc}", 1) from None


# ---------------------------------------------------------------------------------------------
# Connection options, shared by every command (added to each command's signature)


class SignatureProfile(StrEnum):
    jws_detached = "jws-detached"
    jws_compact = "jws-compact"
    http_sig_ed25519 = "http-sig-ed25519"


@dataclass
class Connection:
    profile: str | None = None
    profiles: Path | None = None
    demo: Path | None = None
    url: str | None = None
    token_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    token: str | None = None
    sender_id: str | None = None
    receiver_id: str | None = None
    keys: Path | None = None
    jwks_url: str | None = None
    signature_profile: SignatureProfile | None = None
    encrypt: bool | None = None
    timeout: float | None = None


def _opt(*names: str, help: str, envvar: str | None = None, **kw: Any) -> Any:
    return typer.Option(*names, help=help, envvar=envvar, rich_help_panel=CONNECTION, **kw)


_CONNECTION_PARAMS: list[tuple[str, Any]] = [
    (
        "profile",
        Annotated[
            str | None,
            _opt(
                "--profile",
                help="Profile section to use (default: the registry's name).",
                envvar="DCIHUB_PROFILE",
            ),
        ],
    ),
    (
        "profiles",
        Annotated[
            Path | None,
            _opt(
                "--profiles",
                metavar="FILE",
                help="Profile file (default ~/.config/dcihub/profiles.toml).",
                envvar="DCIHUB_PROFILES",
            ),
        ],
    ),
    (
        "demo",
        Annotated[
            Path | None,
            _opt(
                "--demo",
                metavar="FILE",
                help="demo.json of a `dcihub demo` (default ./dcihub-demo/demo.json).",
                envvar="DCIHUB_DEMO",
            ),
        ],
    ),
    (
        "url",
        Annotated[
            str | None,
            _opt(
                "--url",
                help="The registry's DCI base URL (<url>/registry/sync/search).",
                envvar="DCIHUB_URL",
            ),
        ],
    ),
    (
        "token_url",
        Annotated[
            str | None,
            _opt("--token-url", help="OAuth2 token endpoint.", envvar="DCIHUB_TOKEN_URL"),
        ],
    ),
    (
        "client_id",
        Annotated[
            str | None, _opt("--client-id", help="OAuth2 client id.", envvar="DCIHUB_CLIENT_ID")
        ],
    ),
    (
        "client_secret",
        Annotated[
            str | None,
            _opt(
                "--client-secret",
                help="OAuth2 client secret (prefer the environment).",
                envvar="DCIHUB_CLIENT_SECRET",
            ),
        ],
    ),
    (
        "token",
        Annotated[
            str | None,
            _opt("--token", help="A fixed bearer token instead of OAuth2.", envvar="DCIHUB_TOKEN"),
        ],
    ),
    (
        "sender_id",
        Annotated[
            str | None,
            _opt(
                "--sender-id", help="Our DCI sender_id at the registry.", envvar="DCIHUB_SENDER_ID"
            ),
        ],
    ),
    (
        "receiver_id",
        Annotated[
            str | None,
            _opt(
                "--receiver-id",
                help="The registry's id (the sender_id of its callbacks).",
                envvar="DCIHUB_RECEIVER_ID",
            ),
        ],
    ),
    (
        "keys",
        Annotated[
            Path | None,
            _opt(
                "--keys",
                metavar="FILE",
                help="Our private JWK set (signing + decryption keys).",
                envvar="DCIHUB_KEYS",
            ),
        ],
    ),
    (
        "jwks_url",
        Annotated[
            str | None,
            _opt(
                "--jwks-url",
                help="The registry's JWKS (to verify its replies).",
                envvar="DCIHUB_JWKS_URL",
            ),
        ],
    ),
    (
        "signature_profile",
        Annotated[
            SignatureProfile | None,
            _opt(
                "--signature-profile",
                help="How requests are signed.",
                envvar="DCIHUB_SIGNATURE_PROFILE",
                case_sensitive=False,
            ),
        ],
    ),
    (
        "encrypt",
        Annotated[
            bool | None,
            _opt(
                "--encrypt/--no-encrypt",
                help="Encrypt messages to the registry.",
                show_default=False,
            ),
        ],
    ),
    (
        "timeout",
        Annotated[
            float | None,
            _opt("--timeout", help="Seconds for one HTTP exchange (default 30).", min=0.1),
        ],
    ),
]


def _with_connection(fn: F) -> F:
    """Add the connection options to `fn`'s signature; `fn` receives them as `conn=`."""
    signature = inspect.signature(fn, eval_str=True)
    params = [p for p in signature.parameters.values() if p.name != "conn"]
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind, default=None)
        for name, kind in _CONNECTION_PARAMS
    ]
    names = [name for name, _ in _CONNECTION_PARAMS]

    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> Any:
        conn = Connection(**{name: kwargs.pop(name, None) for name in names})
        with _one_line_errors():
            return fn(*args, conn=conn, **kwargs)

    command.__signature__ = signature.replace(parameters=params + extra)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params + extra}
    return command  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# Settings resolution


def profiles_path(given: Path | None = None) -> Path:
    """The profile file: `given`, else $DCIHUB_PROFILES, else ~/.config/dcihub/profiles.toml
    (under $XDG_CONFIG_HOME when set)."""
    if given is not None:
        return given.expanduser()
    env = os.environ.get("DCIHUB_PROFILES")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "dcihub" / "profiles.toml"


def read_profiles(path: Path) -> dict[str, dict[str, Any]]:
    from .client import ConfigurationError

    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read the profile file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"the profile file {path} is not valid TOML: {exc}") from None
    return {name: dict(section) for name, section in data.items() if isinstance(section, dict)}


def _flag_values(conn: Connection) -> dict[str, Any]:
    values = {
        "base_url": conn.url,
        "token_url": conn.token_url,
        "client_id": conn.client_id,
        "client_secret": conn.client_secret,
        "token": conn.token,
        "sender_id": conn.sender_id,
        "receiver_id": conn.receiver_id,
        "keys_file": conn.keys.expanduser().resolve() if conn.keys else None,
        "jwks_url": conn.jwks_url,
        "signature_profile": conn.signature_profile.value if conn.signature_profile else None,
        "encrypt": conn.encrypt,
        "timeout": conn.timeout,
    }
    return {k: v for k, v in values.items() if v is not None}


def resolve_settings(registry: str, conn: Connection, *, login: bool = False) -> "ClientSettings":
    """The client settings for `registry`: flags > environment > profile > demo."""
    from .client import ClientSettings, ConfigurationError
    from .client.settings import env_values
    from .standard.profiles import PROFILES

    given = {**env_values(None), **_flag_values(conn)}
    path = profiles_path(conn.profiles)
    name = conn.profile or registry
    section = read_profiles(path).get(name)
    if conn.profile and section is None and not login:
        raise ConfigurationError(f"no profile {conn.profile!r} in {path}")
    demo = conn.demo or DEFAULT_DEMO
    base: dict[str, Any]
    if section is not None:
        base = dict(section)
        keys_file = base.get("keys_file")
        if keys_file and not Path(keys_file).is_absolute():
            base["keys_file"] = path.parent / keys_file
        source = f"profile [{name}] of {path}"
    elif "base_url" not in given and (conn.demo is not None or demo.exists()):
        demo_settings = ClientSettings.from_demo(registry, demo)
        base = demo_settings.model_dump(exclude_none=True)
        for secret in ("client_secret", "token"):
            value = getattr(demo_settings, secret)
            if value is not None:
                base[secret] = value.get_secret_value()
        source = f"the demo ({demo})"
    elif "base_url" not in given:
        raise ConfigurationError(
            f"no settings for registry {registry!r}: give --url (and credentials), run "
            f"`dcihub login {registry} --url …` first, or run next to a `dcihub demo` "
            f"(no {demo} here)"
        )
    else:
        base, source = {}, "flags and environment"
    data = {**base, **given}
    if "registry" not in data and registry.lower() in PROFILES:
        data["registry"] = registry.lower()
    return ClientSettings.build(data, source)


# ---------------------------------------------------------------------------------------------
# Queries from the command line


_WHERE = re.compile(
    r"^\s*(?P<attr>[A-Za-z_][\w.:-]*)\s*"
    r"(?:(?P<op>==|!=|<=|>=|=|<|>)|\s(?P<word>in|not\s+in)\s)\s*(?P<value>.*?)\s*$",
    re.IGNORECASE,
)


def _value(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _compare(attr: Any, op: str, value: Any) -> Any:
    if op in ("=", "=="):
        return attr == value
    if op == "!=":
        return attr != value
    if op == "<":
        return attr < value
    if op == "<=":
        return attr <= value
    if op == ">":
        return attr > value
    return attr >= value


def parse_where(conditions: list[str]) -> "Query":
    """`attr op value` conditions (op: = == != < <= > >= in, `not in`), AND-ed."""
    from .client import Q
    from .client.query import Expr

    parts: list[Expr] = []
    for text in conditions:
        found = _WHERE.match(text)
        if found is None or not found["value"]:
            raise UsageError(
                f"--where {text!r}: expected 'attribute op value' with op one of "
                "= == != < <= > >= in (e.g. 'age >= 60', 'sex in female,male')"
            )
        attr = Q.attr(found["attr"])
        op = found["op"] or " ".join(found["word"].lower().split())
        raw = found["value"]
        if op in ("in", "not in"):
            values = [_value(v) for v in raw.strip("[]()").split(",") if v.strip()]
            if not values:
                raise UsageError(f"--where {text!r}: 'in' needs a comma-separated list of values")
            cond: Expr = attr.isin(values) if op == "in" else ~attr.isin(values)
        else:
            cond = _compare(attr, op, _value(raw))
        parts.append(cond)
    query = parts[0]
    for part in parts[1:]:
        query = query & part
    return query


def parse_id(text: str) -> "Query":
    """`TYPE=VALUE` (e.g. `UIN=8462951730`)."""
    from .client import Q

    id_type, sep, value = text.partition("=")
    if not sep or not id_type.strip() or not value.strip():
        raise UsageError(f"--id {text!r}: expected TYPE=VALUE, e.g. UIN=8462951730")
    return Q.id(id_type.strip(), value.strip())


def _query(ids: list[str] | None, where: list[str] | None, *, required: bool = True) -> "Query":
    if ids and where:
        raise UsageError("give either --id or --where, not both")
    if ids:
        if len(ids) > 1:
            raise UsageError("give one --id TYPE=VALUE (or several --where conditions)")
        return parse_id(ids[0])
    if where:
        return parse_where(where)
    raise UsageError("give --id TYPE=VALUE or --where 'attribute op value'")


# ---------------------------------------------------------------------------------------------
# Showing the exchange (--show-envelope)


def _pretty(body: bytes) -> str:
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except (ValueError, UnicodeDecodeError):
        return body.decode("utf-8", "replace")


def _show(title: str, body: bytes) -> None:
    errors.print(f"[bold cyan]{escape(title)}[/bold cyan]", soft_wrap=True, highlight=False)
    errors.print(_pretty(body), soft_wrap=True, highlight=False, markup=False)


def _http_client(timeout: float, show: bool) -> "httpx.Client":
    import httpx

    if not show:
        return httpx.Client(timeout=timeout)

    def on_request(request: httpx.Request) -> None:
        if "/registry/" in request.url.path:
            auth = "authorization: Bearer …" if "authorization" in request.headers else ""
            _show(f"→ {request.method} {request.url}  {auth}".rstrip(), request.content)

    def on_response(response: httpx.Response) -> None:
        if "/registry/" in response.request.url.path:
            response.read()
            _show(f"← HTTP {response.status_code} {response.request.url}", response.content)

    return httpx.Client(
        timeout=timeout, event_hooks={"request": [on_request], "response": [on_response]}
    )


class _ShownApp:
    """An ASGI wrapper printing each callback received and the receiver's answer."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        answer: list[bytes] = []
        status: list[int] = []

        async def receiving() -> Any:
            message = await receive()
            if message.get("type") == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    _show(f"⇠ callback {scope.get('method')} {scope.get('path')}", b"".join(chunks))
            return message

        async def sending(message: Any) -> None:
            if message.get("type") == "http.response.start":
                status.append(message.get("status", 0))
            elif message.get("type") == "http.response.body":
                answer.append(message.get("body", b""))
                if not message.get("more_body"):
                    code = status[0] if status else 0
                    _show(f"⇢ answered HTTP {code}", b"".join(answer))
            await send(message)

        await self.app(scope, receiving, sending)


def _receiver(show: bool, **handlers: Any) -> "CallbackReceiver":
    from .client import CallbackReceiver

    class ShownReceiver(CallbackReceiver):
        @property
        def app(self) -> Any:
            return _ShownApp(super().app)

    return (ShownReceiver if show else CallbackReceiver)(**handlers)


# ---------------------------------------------------------------------------------------------
# Output


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 40 else text[:39] + "…"
    return str(value)


def _attribute(record: "Record", name: str) -> Any:
    return getattr(record, name)


def _raw_member(record: "Record", name: str) -> Any:
    return record.raw.get(name)


def _records_table(records: "list[Record]", title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("#", justify="right", style="dim")
    columns: list[tuple[str, Callable[[Record], Any]]] = []

    def first_id(record: "Record") -> str:
        ids = record.identifiers
        return f"{ids[0].type} {ids[0].value}" if ids else ""

    if any(r.identifiers for r in records):
        columns.append(("identifier", first_id))
    if any(r.name for r in records):
        columns.append(("name", lambda r: r.name.full if r.name else ""))
    for label, attr in (("sex", "sex"), ("birth date", "birth_date"), ("death date", "death_date")):
        if any(getattr(r, attr) for r in records):
            columns.append((label, functools.partial(_attribute, name=attr)))
    shown = {"name", "sex", "gender", "birth_date", "death_date", "identifier", "is_deceased"}
    extra: list[str] = []
    for record in records[:20]:
        for key, value in record.raw.items():
            if key in shown or key in extra or isinstance(value, dict | list):
                continue
            if key.startswith("@") or key.endswith("identifier") or len(extra) >= 4:
                continue
            extra.append(key)
    for key in extra:
        columns.append((key, functools.partial(_raw_member, name=key)))
    for label, _ in columns:
        table.add_column(label, no_wrap=label in ("identifier", "birth date", "death date"))
    for n, record in enumerate(records, start=1):
        table.add_row(str(n), *(_cell(get(record)) for _, get in columns))
    return table


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def _search_json(registry: str, result: "SearchResult", records: "list[Record]") -> dict:
    return {
        "registry": registry,
        "transaction_id": result.transaction_id,
        "correlation_id": result.correlation_id,
        "reference_id": result.reference_id,
        "status": result.status,
        "total_count": result.total_count,
        "page": result.page,
        "page_size": result.page_size,
        "count": len(records),
        "records": [r.raw for r in records],
    }


# ---------------------------------------------------------------------------------------------
# Commands


IdOpt = Annotated[
    list[str] | None,
    typer.Option("--id", metavar="TYPE=VALUE", help="Search by identifier, e.g. UIN=8462951730."),
]
WhereOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--where",
        metavar="'ATTR OP VALUE'",
        help="A condition (op: = == != < <= > >= in); several are AND-ed. "
        "E.g. 'age >= 60', 'sex in female,male'.",
    ),
]
JsonOpt = Annotated[
    bool,
    typer.Option("--json", help="Print JSON (one object) for scripts.", rich_help_panel=OUTPUT),
]
ShowOpt = Annotated[
    bool,
    typer.Option(
        "--show-envelope",
        help="Print each request and response (and callback) exchanged, on standard error.",
        rich_help_panel=OUTPUT,
    ),
]
CallbackHostOpt = Annotated[
    str, typer.Option("--callback-host", help="Address of the callback receiver run for the reply.")
]
CallbackPortOpt = Annotated[
    int, typer.Option("--callback-port", help="Its port (0: a free one).", min=0, max=65535)
]
CallbackUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--callback-url",
        help="Send callbacks to this receiver (e.g. a `dcihub listen`) instead, and do not wait.",
    ),
]
WaitOpt = Annotated[
    float,
    typer.Option("--callback-timeout", help="Seconds to wait for the callback.", min=0.1),
]


@_with_connection
def search(
    registry: Annotated[
        str, typer.Argument(help="Registry (crvs, social, dr, fr, ibr, ess) or profile.")
    ],
    ids: IdOpt = None,
    where: WhereOpt = None,
    record_type: Annotated[
        str | None, typer.Option("--record-type", help="Record type (e.g. Member, Group).")
    ] = None,
    page_size: Annotated[
        int | None, typer.Option("--page-size", min=1, help="Records per page.")
    ] = None,
    page: Annotated[int, typer.Option("--page", min=1, help="Page number.")] = 1,
    sort: Annotated[
        list[str] | None,
        typer.Option("--sort", metavar="ATTR|-ATTR", help="Sort by an attribute (-: descending)."),
    ] = None,
    all_pages: Annotated[
        bool, typer.Option("--all-pages", help="Fetch every page (from --page on).")
    ] = False,
    use_async: Annotated[
        bool,
        typer.Option("--async", help="Search asynchronously: ACK, then the on-search callback."),
    ] = False,
    callback_host: CallbackHostOpt = "127.0.0.1",
    callback_port: CallbackPortOpt = 0,
    callback_url: CallbackUrlOpt = None,
    callback_timeout: WaitOpt = 60.0,
    as_json: JsonOpt = False,
    show_envelope: ShowOpt = False,
    *,
    conn: Connection,
) -> None:
    """Search a registry by identifier (--id) or conditions (--where).

    Prints the records as a table (or JSON with --json); --all-pages follows the pages,
    --async asks for the on-search callback (a receiver runs on a free loopback port)."""
    from .client import RegistryClient

    query = _query(ids, where)
    if callback_url and not use_async:
        raise UsageError("--callback-url is for --async")
    if callback_url and all_pages:
        raise UsageError("--all-pages waits for each page: it cannot be used with --callback-url")
    settings = resolve_settings(registry, conn)
    if callback_url:
        settings = settings.merged(callback_url=callback_url)
    options: dict[str, Any] = {"record_type": record_type}
    if sort:
        options["sort"] = list(sort)
    http = _http_client(settings.timeout, show_envelope)
    receiver = None
    running = None
    if use_async and not callback_url:
        receiver = _receiver(show_envelope)
        running = receiver.serve(callback_host, callback_port)
    try:
        with RegistryClient(settings, receiver=receiver, http=http) as client:
            if callback_url:
                pending = client.search_async(
                    query, page_size=page_size, page_number=page, **options
                )
                _print_ack(pending, "on-search", callback_url, as_json)
                return

            def fetch(number: int) -> "SearchResult":
                if use_async:
                    later = client.search_async(
                        query, page_size=page_size, page_number=number, **options
                    )
                    return later.result(callback_timeout).raise_for_status()
                return client.search(query, page_size=page_size, page_number=number, **options)

            result = fetch(page)
            records = list(result.records)
            pages = 1
            if all_pages:
                number: int | None = page
                seen = len(records)
                while True:
                    assert number is not None
                    number = client.core.next_page(result, number, seen)
                    if number is None:
                        break
                    result = fetch(number)
                    records.extend(result.records)
                    seen += len(result.records)
                    pages += 1
    finally:
        http.close()
        if running is not None:
            running.stop()
    if as_json:
        data = _search_json(registry, result, records)
        if all_pages:
            data.update(page=None, pages=pages)
        _emit_json(data)
        return
    total = result.total_count
    if all_pages:
        where_text = f"{pages} page{'s' if pages != 1 else ''}"
    else:
        where_text = f"page {result.page or page}" + (
            f", {result.page_size} a page" if result.page_size else ""
        )
    of_total = f" of {total}" if total is not None else ""
    title = f"{registry}: {len(records)}{of_total} records ({where_text})"
    out = _out()
    if records:
        out.print(_records_table(records, title))
    else:
        out.print(f"{escape(title)}: no record matches", soft_wrap=True)
    out.print(
        f"[dim]transaction {escape(result.transaction_id or '-')}, correlation "
        f"{escape(result.correlation_id or '-')}[/dim]",
        soft_wrap=True,
    )


def _print_ack(pending: Any, callback: str, url: str, as_json: bool) -> None:
    if as_json:
        _emit_json(
            {
                "ack_status": pending.ack.ack_status,
                "transaction_id": pending.transaction_id,
                "message_id": pending.message_id,
                "correlation_id": pending.correlation_id,
                "callback_url": url,
            }
        )
        return
    _out().print(
        f"{escape(pending.ack.ack_status)}: transaction {escape(pending.transaction_id)}, "
        f"correlation {escape(pending.correlation_id or '-')}; the {callback} callback goes to "
        f"{escape(url)}",
        soft_wrap=True,
    )


class TxnBy(StrEnum):
    transaction_id = "transaction_id"
    correlation_id = "correlation_id"
    reference_ids = "reference_ids"


class TxnType(StrEnum):
    search = "search"
    subscribe = "subscribe"
    unsubscribe = "unsubscribe"
    receipt = "receipt"


@_with_connection
def txn_status(
    registry: Annotated[str, typer.Argument(help="Registry or profile.")],
    identifier: Annotated[
        str,
        typer.Argument(
            metavar="TRANSACTION_ID",
            help="The transaction id (or, with --by, a correlation id or comma-separated "
            "reference ids).",
        ),
    ],
    by: Annotated[
        TxnBy, typer.Option("--by", help="What TRANSACTION_ID is.")
    ] = TxnBy.transaction_id,
    txn_type: Annotated[
        TxnType, typer.Option("--type", help="The transaction's type.")
    ] = TxnType.search,
    as_json: JsonOpt = False,
    show_envelope: ShowOpt = False,
    *,
    conn: Connection,
) -> None:
    """Where a transaction stands at the registry (sync/txn/status)."""
    from .client import RegistryClient

    settings = resolve_settings(registry, conn)
    http = _http_client(settings.timeout, show_envelope)
    try:
        with RegistryClient(settings, http=http) as client:
            if by is TxnBy.transaction_id:
                status = client.txn_status(identifier, txn_type=txn_type.value)
            elif by is TxnBy.correlation_id:
                status = client.txn_status(correlation_id=identifier, txn_type=txn_type.value)
            else:
                refs = [r.strip() for r in identifier.split(",") if r.strip()]
                status = client.txn_status(reference_ids=refs, txn_type=txn_type.value)
    finally:
        http.close()
    _print_status(registry, identifier, status, as_json)


def _print_status(registry: str, asked: str, status: "TxnStatusResult", as_json: bool) -> None:
    if as_json:
        _emit_json(
            {
                "registry": registry,
                "asked": asked,
                "known": status.known,
                "txn_type": status.txn_type,
                "transaction_id": status.about_transaction_id or asked,
                "correlation_id": status.correlation_id,
                "statuses": status.statuses,
                "results": [
                    {
                        "reference_id": r.reference_id,
                        "status": r.status,
                        "reason_code": r.reason_code,
                        "reason_message": r.reason_message,
                        "total_count": r.total_count,
                        "records": [rec.raw for rec in r.records],
                    }
                    for r in status.results
                ],
                "subscription_codes": status.subscribe.codes if status.subscribe else [],
            }
        )
        return
    out = _out()
    if not status.known:
        out.print(f"{escape(registry)}: no transaction {escape(asked)} known", soft_wrap=True)
        return
    out.print(
        f"{escape(registry)}: {escape(status.txn_type)} transaction "
        f"{escape(status.about_transaction_id or asked)} is known",
        soft_wrap=True,
    )
    if status.results:
        table = Table()
        for column in ("reference id", "status", "records", "reason"):
            table.add_column(column)
        for r in status.results:
            reason = ": ".join(x for x in (r.reason_code, r.reason_message) if x)
            count = r.total_count if r.total_count is not None else len(r.records)
            table.add_row(r.reference_id, r.status, str(count), reason)
        out.print(table)
    if status.subscribe is not None:
        out.print(f"subscription codes: {escape(', '.join(status.subscribe.codes) or '-')}")


@_with_connection
def subscribe(
    registry: Annotated[str, typer.Argument(help="Registry or profile.")],
    event: Annotated[str, typer.Option("--event", help="Event type (e.g. death, birth).")],
    ids: IdOpt = None,
    where: WhereOpt = None,
    record_type: Annotated[str | None, typer.Option("--record-type", help="Record type.")] = None,
    frequency: Annotated[
        str | None,
        typer.Option("--frequency", help="How often to notify (a cron expression), if periodic."),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option("--follow", help="Keep the receiver running and print notifications."),
    ] = False,
    count: Annotated[
        int | None, typer.Option("--count", min=1, help="With --follow: stop after N callbacks.")
    ] = None,
    callback_host: CallbackHostOpt = "127.0.0.1",
    callback_port: CallbackPortOpt = 0,
    callback_url: CallbackUrlOpt = None,
    callback_timeout: WaitOpt = 60.0,
    as_json: JsonOpt = False,
    show_envelope: ShowOpt = False,
    *,
    conn: Connection,
) -> None:
    """Subscribe to a registry's events (subscribe, then on-subscribe with the codes).

    Without --callback-url a receiver runs here for the on-subscribe (and, with --follow, for
    the notifications, printed until Ctrl-C); with --callback-url the callbacks go to that
    receiver (a `dcihub listen`) and the command prints the ACK."""
    from .client import RegistryClient

    if ids or where:
        query = _query(ids, where)
    else:
        raise UsageError("give the records to follow: --where 'attribute op value' or --id")
    if callback_url and follow:
        raise UsageError("--follow runs the receiver here: it cannot be used with --callback-url")
    settings = resolve_settings(registry, conn)
    if callback_url:
        settings = settings.merged(callback_url=callback_url)
    http = _http_client(settings.timeout, show_envelope)
    printer = _Printer(as_json)
    receiver = None
    running = None
    if not callback_url:
        receiver = _receiver(show_envelope, **printer.handlers())
        running = receiver.serve(callback_host, callback_port)
    try:
        with RegistryClient(settings, receiver=receiver, http=http) as client:
            pending = client.subscribe(
                query, event_type=event, record_type=record_type, frequency=frequency
            )
            if callback_url:
                _print_ack(pending, "on-subscribe", callback_url, as_json)
                return
            subscribed = pending.result(callback_timeout)
            for item in subscribed.items:
                item.raise_for_status()
            printer.subscribed(subscribed)
            if follow:
                assert running is not None
                printer.note(f"listening on {running.url} for notifications; Ctrl-C stops")
                printer.wait(count)
    finally:
        http.close()
        if running is not None:
            running.stop()


@_with_connection
def unsubscribe(
    registry: Annotated[str, typer.Argument(help="Registry or profile.")],
    codes: Annotated[
        list[str], typer.Argument(metavar="CODE...", help="Subscription codes to end.")
    ],
    callback_host: CallbackHostOpt = "127.0.0.1",
    callback_port: CallbackPortOpt = 0,
    callback_url: CallbackUrlOpt = None,
    callback_timeout: WaitOpt = 60.0,
    as_json: JsonOpt = False,
    show_envelope: ShowOpt = False,
    *,
    conn: Connection,
) -> None:
    """End subscriptions (unsubscribe, then on-unsubscribe with each code's new status).

    Without --callback-url a receiver runs here for the on-unsubscribe; with --callback-url
    the callback goes to that receiver (a `dcihub listen`) and the command prints the ACK. The
    registry ends all the codes or none: a code that is unknown, another partner's or ended
    already fails the whole request (exit status 1, the registry's reason)."""
    from .client import RegistryClient
    from .client.errors import RejectedError

    listed = [c.strip() for c in codes if c.strip()]
    if not listed:
        raise UsageError("give the subscription codes to end (dcihub subscribe printed them)")
    settings = resolve_settings(registry, conn)
    if callback_url:
        settings = settings.merged(callback_url=callback_url)
    http = _http_client(settings.timeout, show_envelope)
    printer = _Printer(as_json)
    receiver = None
    running = None
    if not callback_url:
        receiver = _receiver(show_envelope, **printer.handlers())
        running = receiver.serve(callback_host, callback_port)
    try:
        with RegistryClient(settings, receiver=receiver, http=http) as client:
            pending = client.unsubscribe(listed)
            if callback_url:
                _print_ack(pending, "on-unsubscribe", callback_url, as_json)
                return
            result = pending.result(callback_timeout)
            if not result.ok:
                raise RejectedError(result.reason_code, result.reason_message)
            printer.unsubscribed(result)
    finally:
        http.close()
        if running is not None:
            running.stop()


class _Printer:
    """Prints callbacks as they arrive (a line, then a table of records; or JSON lines)."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.count = 0
        self._lock = threading.Condition()

    def handlers(self) -> dict[str, Callable[[Any], None]]:
        return {
            "on_notify": self.notified,
            "on_search": self.searched,
            "on_status": self.status,
            "on_subscribe": self.subscribed,
            "on_unsubscribe": self.unsubscribed,
        }

    def note(self, text: str) -> None:
        if not self.as_json:
            errors.print(f"[dim]{escape(text)}[/dim]", soft_wrap=True, highlight=False)

    def _done(self) -> None:
        with self._lock:
            self.count += 1
            self._lock.notify_all()

    def wait(self, count: int | None, timeout: float | None = None) -> None:
        deadline = time.monotonic() + timeout if timeout else None
        with self._lock:
            while count is None or self.count < count:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return
                self._lock.wait(0.5 if left is None else min(left, 0.5))

    def notified(self, notification: "Notification") -> None:
        if self.as_json:
            _emit_json(
                {
                    "callback": "notify",
                    "sender_id": notification.sender_id,
                    "transaction_id": notification.transaction_id,
                    "message_id": notification.message_id,
                    "subscription_codes": notification.subscription_codes,
                    "events": [
                        {
                            "reference_id": e.reference_id,
                            "timestamp": e.timestamp,
                            "reg_event_type": e.reg_event_type,
                            "reg_record_type": e.reg_record_type,
                            "records": [r.raw for r in e.records],
                        }
                        for e in notification.events
                    ],
                }
            )
        else:
            out = _out()
            kinds = sorted({e.reg_event_type or "event" for e in notification.events})
            codes = ", ".join(notification.subscription_codes)
            out.print(
                f"[bold]notify[/bold] from {escape(notification.sender_id or '?')}: "
                f"{len(notification.events)} {escape('/'.join(kinds))} event(s)"
                + (f", subscription {escape(codes)}" if codes else "")
                + f" [dim](transaction {escape(notification.transaction_id)})[/dim]",
                soft_wrap=True,
            )
            if notification.records:
                out.print(_records_table(notification.records))
        self._done()

    def searched(self, batch: "BatchResult") -> None:
        if self.as_json:
            _emit_json(
                {
                    "callback": "on-search",
                    "transaction_id": batch.transaction_id,
                    "correlation_id": batch.correlation_id,
                    "results": [
                        {
                            "reference_id": r.reference_id,
                            "status": r.status,
                            "total_count": r.total_count,
                            "records": [rec.raw for rec in r.records],
                        }
                        for r in batch
                    ],
                }
            )
        else:
            out = _out()
            for r in batch:
                out.print(
                    f"[bold]on-search[/bold] transaction {escape(batch.transaction_id)}, item "
                    f"{escape(r.reference_id)}: {escape(r.status)}, {len(r.records)} of "
                    f"{r.total_count if r.total_count is not None else '?'} records",
                    soft_wrap=True,
                )
                if r.records:
                    out.print(_records_table(r.records))
        self._done()

    def status(self, status: "TxnStatusResult") -> None:
        if self.as_json:
            _emit_json(
                {
                    "callback": "txn/on-status",
                    "transaction_id": status.about_transaction_id,
                    "known": status.known,
                    "txn_type": status.txn_type,
                    "statuses": status.statuses,
                }
            )
        else:
            states = ", ".join(f"{k}: {v}" for k, v in status.statuses.items()) or "-"
            _out().print(
                f"[bold]txn/on-status[/bold] {escape(status.txn_type)} transaction "
                f"{escape(status.about_transaction_id or '?')}: "
                f"{'known' if status.known else 'unknown'} ({escape(states)})",
                soft_wrap=True,
            )
        self._done()

    def subscribed(self, result: "SubscribeResult") -> None:
        if self.as_json:
            _emit_json(
                {
                    "callback": "on-subscribe",
                    "transaction_id": result.transaction_id,
                    "correlation_id": result.correlation_id,
                    "codes": result.codes,
                    "items": [
                        {
                            "reference_id": i.reference_id,
                            "status": i.status,
                            "reason_code": i.reason_code,
                            "reason_message": i.reason_message,
                        }
                        for i in result.items
                    ],
                }
            )
        else:
            _out().print(
                f"[bold]subscribed[/bold]: {escape(', '.join(result.codes) or 'no code given')} "
                f"[dim](transaction {escape(result.transaction_id)})[/dim]",
                soft_wrap=True,
            )

    def unsubscribed(self, result: "UnsubscribeResult") -> None:
        if self.as_json:
            _emit_json(
                {
                    "callback": "on-unsubscribe",
                    "transaction_id": result.transaction_id,
                    "status": result.status,
                    "subscription_status": result.subscription_status,
                }
            )
        else:
            states = ", ".join(f"{k}: {v}" for k, v in result.subscription_status.items())
            _out().print(
                f"[bold]on-unsubscribe[/bold] {escape(result.status)} ({escape(states or '-')})",
                soft_wrap=True,
            )
        self._done()


@_with_connection
def listen(
    registries: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[REGISTRY]...",
            help="Registries (or profiles) whose callbacks to accept (default: every registry "
            "of the demo, or every profile).",
        ),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", help="Port to listen on.", min=0, max=65535)
    ] = 8700,
    count: Annotated[
        int | None, typer.Option("--count", min=1, help="Stop after N callbacks.")
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print one JSON object a line.", rich_help_panel=OUTPUT),
    ] = False,
    show_envelope: ShowOpt = False,
    *,
    conn: Connection,
) -> None:
    """Run a callback receiver and print callbacks as they arrive, until Ctrl-C.

    Prints notifications, and on-search, txn/on-status, on-subscribe and on-unsubscribe
    callbacks. Each callback's signature is verified with the keys of the registry that sent it."""
    from .client import RegistryClient

    names = list(registries or []) or _default_registries(conn)
    printer = _Printer(as_json)
    receiver = _receiver(show_envelope, **printer.handlers())
    clients = []
    for name in names:
        settings = resolve_settings(name, conn)
        if not settings.receiver_id:
            raise UsageError(
                f"{name}: the registry's id is needed to accept its callbacks: give --receiver-id"
            )
        clients.append(RegistryClient(settings, receiver=receiver))
    running = receiver.serve(host, port)
    previous = _stop_on_sigterm()
    printer.note(
        f"listening on {running.url} (callbacks at {running.url}/registry/…) for "
        f"{', '.join(names)}; Ctrl-C stops"
    )
    try:
        printer.wait(count)
    except KeyboardInterrupt:
        printer.note("stopped")
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        running.stop()
        for client in clients:
            client.close()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _stop_on_sigterm() -> Any:
    """Stop on SIGTERM as on Ctrl-C (main thread only); returns the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _interrupt)


def _default_registries(conn: Connection) -> list[str]:
    from .client import ConfigurationError

    if conn.profile:
        return [conn.profile]
    demo = conn.demo or DEFAULT_DEMO
    if demo.exists() and conn.url is None:
        try:
            return list(json.loads(demo.read_text("utf-8")).get("registries") or {})
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read the demo file {demo}: {exc}") from None
    profiles = list(read_profiles(profiles_path(conn.profiles)))
    if profiles:
        return profiles
    raise UsageError("name the registries whose callbacks to accept (e.g. `dcihub listen crvs`)")


# -- login ------------------------------------------------------------------------------------

_PROFILE_MEMBERS = (
    "base_url",
    "registry",
    "sender_id",
    "receiver_id",
    "token_url",
    "client_id",
    "client_secret",
    "token",
    "keys_file",
    "jwks_url",
    "signature_profile",
    "encrypt",
    "timeout",
    "callback_url",
)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a TOML basic string


def write_profile(path: Path, name: str, members: dict[str, Any]) -> None:
    """Set profile `name` in the profile file (created mode 0600, its directory 0700)."""
    profiles = read_profiles(path)
    profiles[name] = members
    lines = ["# dcihub client profiles (`dcihub login`): holds secrets, keep it mode 0600", ""]
    for section, values in profiles.items():
        lines.append(f"[{json.dumps(section)}]")
        for key, value in values.items():
            if value is None or isinstance(value, dict | list):
                continue
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    os.chmod(temp, 0o600)
    os.replace(temp, path)


@_with_connection
def login(
    registry: Annotated[str, typer.Argument(help="Registry name (crvs, social, …) it is for.")],
    check: Annotated[
        bool,
        typer.Option("--check/--no-check", help="Get a token first, to check the credentials."),
    ] = True,
    *,
    conn: Connection,
) -> None:
    """Save connection settings as a profile, used by later commands for this registry.

    The profile is named after the registry (or --profile NAME) in ~/.config/dcihub/profiles.toml
    (or --profiles FILE / $DCIHUB_PROFILES), written mode 0600; settings not given come from an
    existing profile of that name, or the demo."""
    import httpx

    from .client import TransportError
    from .client.tokens import TokenState

    settings = resolve_settings(registry, conn, login=True)
    if settings.private_jwks() is None:
        from .client import ConfigurationError

        raise ConfigurationError("no keys: give --keys FILE (our private JWK set)")
    if check and settings.token is None:
        state = TokenState(settings)
        request = state.request()
        try:
            response = httpx.post(
                request.url, data=request.form, headers=request.headers, timeout=settings.timeout
            )
        except httpx.HTTPError as exc:
            raise TransportError(
                f"cannot reach the token endpoint {request.url}: {exc}", url=request.url
            ) from None
        state.accept(response.status_code, response.content)
    members: dict[str, Any] = {}
    dumped = settings.model_dump()
    for key in _PROFILE_MEMBERS:
        value = dumped.get(key)
        if key in ("client_secret", "token"):
            secret = getattr(settings, key)
            value = secret.get_secret_value() if secret is not None else None
        if key == "keys_file" and value is not None:
            value = str(Path(value).resolve())
        if key == "signature_profile" and value == "jws-detached":
            continue
        if key == "encrypt" and not value:
            continue
        if key == "timeout" and value == 30.0:
            continue
        if value is not None:
            members[key] = value
    path = profiles_path(conn.profiles)
    name = conn.profile or registry
    write_profile(path, name, members)
    checked = " (credentials checked: a token was issued)" if check and not settings.token else ""
    _out().print(
        f"saved profile [bold]{escape(name)}[/bold] for {escape(settings.base_url)} in "
        f"{escape(str(path))} (mode 0600){checked}",
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    """Add the client commands to `app` (the `dcihub` command)."""
    panel = "Client (programme side)"
    app.command("search", rich_help_panel=panel)(search)
    app.command("subscribe", rich_help_panel=panel)(subscribe)
    app.command("unsubscribe", rich_help_panel=panel)(unsubscribe)
    app.command("listen", rich_help_panel=panel)(listen)
    app.command("txn-status", rich_help_panel=panel)(txn_status)
    app.command("login", rich_help_panel=panel)(login)
