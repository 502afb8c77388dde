"""`dcihub demo`: build a synthetic country once into a store (an embedded SQLite file in the
data directory, or the PostgreSQL database given with `--store-url`) and serve all six
registries over it, writing `DIR/demo.json` for clients. A restart on a store that already
holds the same country generates nothing: its samples and locations are in the store."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Settings
from .population.load import Population, ensure_population
from .store import Store

DEMO_NODE_ID = "dcihub.demo"
DEFAULT_SEED = 20260101


@dataclass
class DemoSetup:
    settings: Settings
    store: Store
    country: Population
    built_now: bool
    data_dir: Path
    info: dict[str, Any]
    upgraded: list[str]  # what upgrading an existing demo store did (empty: nothing)


def demo_settings(data_dir: Path, host: str, port: int, store_url: str | None = None) -> Settings:
    # On loopback the operator pages are open (only this machine reaches them); a demo
    # listening on other addresses asks for the operator token like any node.
    access = "open" if _is_loopback(host) else "token"
    return Settings(
        store_url=store_url or f"sqlite:///{(data_dir / 'demo.db').resolve()}",
        store_auto_upgrade=True,  # the demo owns its store: upgraded in place, never rebuilt
        node_id=DEMO_NODE_ID,
        base_url=f"http://{host}:{port}",
        security={"base_dir": str(data_dir.resolve())},  # type: ignore[arg-type]
        operations={"access": access},  # type: ignore[arg-type]
    )


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def prepare_demo(
    data_dir: Path,
    host: str,
    port: int,
    people: int,
    seed: int = DEFAULT_SEED,
    progress: Any = None,
    store_url: str | None = None,
) -> DemoSetup:
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = demo_settings(data_dir, host, port, store_url)
    store = Store(settings.store_url)
    report = store.upgrade()  # the demo owns its store: upgraded in place, never rebuilt
    upgraded = report.done if report.before.state != "empty" else []
    country, built_now = ensure_population(store, people, seed, progress=progress)
    info = demo_info(settings, country)
    info.update(ensure_demo_partner(settings, data_dir))
    info["config"] = str(write_node_config(settings, data_dir).resolve())
    return DemoSetup(settings, store, country, built_now, data_dir, info, upgraded)


DEMO_CONFIG = "dcihub.yaml"


def write_node_config(settings: Settings, data_dir: Path) -> Path:
    """The configuration file of the demo's node (`DIR/dcihub.yaml`): every operator command
    (`dcihub partners …`, `keys`, `audit`, `store`, …) reads it when run next to the data
    directory, and `dcihub serve --config` serves the same node."""
    import yaml

    from .security.keys import _atomic_write

    document = {
        "store_url": settings.store_url,
        "store_auto_upgrade": settings.store_auto_upgrade,
        "node_id": settings.node_id,
        "base_url": settings.base_url,
        "registries": list(settings.registries),
        "security": {"base_dir": settings.security.base_dir},
        "operations": {"access": settings.operations.access},
    }
    path = data_dir / DEMO_CONFIG
    header = "# The demo's node (written by `dcihub demo`; see docs/configuration.md)\n"
    _atomic_write(path, (header + yaml.safe_dump(document, sort_keys=False)).encode("utf-8"))
    return path


DEMO_SENDER_ID = "spmis.demo"
DEMO_CLIENT_ID = "demo-spmis"
DEMO_CREDENTIALS = "demo-partner.json"
DEMO_PARTNER_JWK = "demo-partner.jwk.json"


def ensure_demo_partner(settings: Settings, data_dir: Path) -> dict[str, Any]:
    """The demo partner, allowed everything (it alone may also send unsigned requests, so that
    a plain curl works; a signature it does send is always verified). Created once; its client
    secret and private keys are written to DATA_DIR for the person running the demo."""
    from .security.keys import _atomic_write
    from .security.partners import PartnerRegistry
    from .security.provision import provision_partner

    partners_path = settings.security.path(settings.security.partners_file)
    credentials_path = data_dir / DEMO_CREDENTIALS
    jwk_path = data_dir / DEMO_PARTNER_JWK
    registry = PartnerRegistry.load(partners_path) if partners_path.exists() else PartnerRegistry()
    if registry.get(DEMO_SENDER_ID) is not None and credentials_path.exists() and jwk_path.exists():
        credentials = json.loads(credentials_path.read_text("utf-8"))
    else:
        registry.remove(DEMO_SENDER_ID)
        made = provision_partner(
            DEMO_SENDER_ID,
            DEMO_CLIENT_ID,
            name="Demo SP-MIS (allowed everything)",
            scopes={name: "*" for name in settings.registries},
            callback_prefixes=["http://127.0.0.1:*/", "http://localhost:*/"],
            allow_private_callbacks=True,
            allow_unsigned=True,
        )
        registry.add(made.partner, client_secret=made.client_secret)
        registry.save(partners_path)
        credentials = {
            "sender_id": DEMO_SENDER_ID,
            "client_id": DEMO_CLIENT_ID,
            "client_secret": made.client_secret,
        }
        _atomic_write(credentials_path, (json.dumps(credentials, indent=2) + "\n").encode())
        _atomic_write(jwk_path, (json.dumps(made.private_jwks, indent=2) + "\n").encode())
    return {**credentials, "partner_jwk": str(jwk_path.resolve())}


def demo_info(settings: Settings, country: Population) -> dict[str, Any]:
    base = settings.base_url.rstrip("/")
    return {
        "base_url": base,
        "registries": {name: settings.registry_url(name) for name in settings.registries},
        "registry_ids": {name: settings.registry_id(name) for name in settings.registries},
        "token_url": f"{base}/oauth2/client/token",
        "jwks_url": f"{base}/.well-known/jwks.json",
        "people": country.people,
        "seed": country.seed,
        "as_of": country.as_of.isoformat(),
        "samples": country.samples(),
    }


def write_demo_json(data_dir: Path, info: dict[str, Any]) -> Path:
    from .security.keys import _atomic_write

    path = data_dir / "demo.json"
    _atomic_write(path, (json.dumps(info, indent=2) + "\n").encode("utf-8"))  # holds a secret
    return path
