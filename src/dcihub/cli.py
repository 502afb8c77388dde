"""The `dcihub` command: thin — parse, call, print."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from . import __version__

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
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """dcihub: an open implementation of the Digital Convergence Initiative (DCI) standards."""


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Where the demo keeps its store, "
                                           "keys and demo.json.")] = Path("dcihub-demo"),
    people: Annotated[int, typer.Option(help="Size of the synthetic population.", min=10)]
    = 10_000,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic population (same seed, "
                                      "same data).")] = 20260101,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Build a synthetic country (once) and serve all five registries over it.

    Serves the Social Registry, CRVS, Disability, Farmer and Integrated Beneficiary registries,
    the token endpoint, JWKS and console, and writes DIR/demo.json (base URLs, demo partner
    credentials, sample identifiers)."""
    from .demo import prepare_demo, write_demo_json
    from .server.factory import build_app

    started = time.perf_counter()
    console.print(f"[bold]dcihub demo[/bold]: {people:,} people (seed {seed}) in {data_dir}/")

    def progress(registry: str, count: int) -> None:
        console.print(f"  loaded {registry:<6} {count:>9,} records")

    setup = prepare_demo(data_dir, host, port, people, seed, progress=progress)
    if not setup.built_now:
        console.print("  population already built; reusing it")
    fastapi_app, info = build_app(setup.settings, setup.store, demo_info=setup.info)
    path = write_demo_json(data_dir, info)
    setup.country = None  # type: ignore[assignment]  # the generated records are in the store now
    _settle_memory()
    console.print(f"  ready in {time.perf_counter() - started:.1f}s; wrote {path}")
    _print_demo_help(info)
    _serve(fastapi_app, host, port, log_level)


def _print_demo_help(info: dict) -> None:
    base = info["base_url"]
    crvs = info["registries"]["crvs"]
    sample = info["samples"]["crvs"]["identifiers"][0]
    console.print(f"\n  registries: {', '.join(info['registries'])}  (API docs: {base}/docs)")
    if info.get("client_id"):
        console.print(
            "  get a token:\n"
            f"    TOKEN=$(curl -s -X POST {info['token_url']} -d grant_type=client_credentials "
            f"-d client_id={info['client_id']} -d client_secret={info['client_secret']} "
            "| python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')"
        )
    console.print(
        "  search the CRVS by UIN (the demo partner may send unsigned requests):\n"
        f"    curl -s -X POST {crvs}/registry/sync/search -H 'content-type: application/json' "
        + ("-H \"authorization: Bearer $TOKEN\" " if info.get("client_id") else "")
        + "-d '{\"header\": {\"message_id\": \"'m-$RANDOM'\", \"message_ts\": "
        "\"'$(date -u +%Y-%m-%dT%H:%M:%SZ)'\", \"action\": \"search\", \"sender_id\": "
        f"\"{info.get('sender_id', 'spmis.demo')}\", \"total_count\": 1}}, \"message\": "
        "{\"transaction_id\": \"t1\", \"search_request\": [{\"reference_id\": \"r1\", "
        "\"timestamp\": \"2026-01-01T00:00:00Z\", \"search_criteria\": {\"query_type\": "
        f"\"idtype-value\", \"query\": {{\"type\": \"{sample['type']}\", \"value\": "
        f"\"{sample['value']}\"}}}}}}]}}}}'\n"
    )


def _settle_memory() -> None:
    """Collect start-up garbage and freeze what survives, so that the collector does not walk
    long-lived objects again and again while serving."""
    import gc

    gc.collect()
    gc.freeze()


def _serve(fastapi_app: object, host: str, port: int, log_level: str) -> None:
    import uvicorn

    uvicorn.run(fastapi_app, host=host, port=port, log_level=log_level,  # type: ignore[arg-type]
                access_log=log_level == "debug")


@app.command()
def serve(
    config: Annotated[Path, typer.Option("--config", "-c", help="Configuration file (YAML).",
                                         exists=True, dir_okay=False)],
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
        load_settings(config)
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    os.environ["DCIHUB_CONFIG"] = str(config.resolve())
    uvicorn.run("dcihub.server.factory:app_from_env", factory=True, host=host, port=port,
                workers=workers, log_level=log_level, access_log=log_level == "debug")


@app.command()
def worker(
    config: Annotated[Path, typer.Option("--config", "-c", help="Configuration file (YAML).",
                                         exists=True, dir_okay=False)],
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
    delivery_worker = build_worker(settings)
    console.print(f"dcihub worker on {settings.store_url.split('@')[-1]} (Ctrl-C to stop)")
    try:
        anyio.run(delivery_worker.run)
    except KeyboardInterrupt:
        pass


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
