"""Read-only operational pages of a node: `/.well-known/locations.json` (locations_core) and the
`/console/` overview (registries, record counts, endpoints, outbox). No personal data."""

from __future__ import annotations

import html
import re
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import FastAPI
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from .. import __version__
from ..store.access import Reader
from ..store.outbox import DONE, DONE_COUNT_CAP
from .node import RegistryNode, endpoints_for

LOCATIONS_KEY = "population.locations"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _place_ids(places: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    """(id, parent id) of each place row. Rows written by the population loader carry their
    own `code` and their parent's code; rows of older stores (`{name, parent, type}`, the
    parent by name, regions at the top) get ids made of their names."""
    if all(place.get("code") for place in places):
        return [(str(place["code"]), place.get("parent")) for place in places]
    ids = []
    for place in places:
        parent = place.get("parent")
        key = f"{slug(parent)}/{slug(place['name'])}" if parent else slug(place["name"])
        ids.append((key, slug(parent) if parent else None))
    return ids


def location_hierarchy(places: list[dict[str, Any]], updated: float | None) -> dict[str, Any]:
    """`LocationHierarchy` of the locations contract from the place rows the population loader
    stores (`[{code, name, type, parent}]`, see `dcihub.population.world.locations`): one
    `Place` per row, identified by its code (`dcihub-location`), its level in
    `additional_type` (`dcihub:COUNTRY`, `dcihub:REGION`, `dcihub:DISTRICT`) and its parent's
    code in `contained_in_place` (null for the root)."""
    locations = []
    for place, (key, parent) in zip(places, _place_ids(places), strict=True):
        locations.append(
            {
                "@type": "Place",
                "identifier": [
                    {"@type": "PropertyValue", "name": "dcihub-location", "identifier": key}
                ],
                "name": place["name"],
                "additional_type": f"dcihub:{place.get('type', 'PLACE').upper()}",
                "contained_in_place": parent,
            }
        )
    stamp = datetime.fromtimestamp(updated or time.time(), UTC)
    return {
        "@context": {
            "@context": "http://spdci.org/",
            "xsd": "http://www.w3.org/2001/XMLSchema#",
            "schema": "http://schema.org/",
        },
        "@type": "LocationHierarchy",
        "last_updated": stamp.isoformat(timespec="milliseconds"),
        "locations": locations,
    }


def add_operation_routes(app: FastAPI, node: RegistryNode) -> None:
    store = node.store

    @app.get(
        "/.well-known/locations.json",
        tags=["Operations"],
        summary="Location hierarchy of the places the registries know (locations_core)",
    )
    async def locations() -> Response:
        def load(reader: Reader) -> tuple[list[dict[str, Any]], float | None]:
            meta = store.schema.ops.meta
            raw = reader.conn.execute(
                select(meta.c.value).where(meta.c.key == LOCATIONS_KEY)
            ).scalar()
            if not raw:
                return [], None
            doc = orjson.loads(raw)
            return doc.get("places", []), doc.get("updated")

        places, updated = await store.access.read(load, light=True)
        return Response(
            orjson.dumps(location_hierarchy(places, updated)), media_type="application/json"
        )

    @app.get(
        "/console/",
        tags=["Operations"],
        response_class=HTMLResponse,
        summary="Operator overview (read-only; no personal data)",
    )
    async def console(request: Request) -> Response:
        refused = app.state.operator.refused(request)
        if refused is not None:
            return refused

        def gather(reader: Reader) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
            conn = reader.conn
            counts: dict[str, dict[str, int]] = {}
            for name, profile in node.profiles.items():
                counts[name] = {
                    e.name: store.records.count(conn, name, e.name) for e in profile.entities
                }
            return counts, store.outbox.counts(conn)

        counts, outbox = await store.access.read(gather)
        return HTMLResponse(render_console(node, counts, outbox))


def render_console(
    node: RegistryNode, counts: dict[str, dict[str, int]], outbox: dict[str, int]
) -> str:
    esc = html.escape
    settings = node.settings
    rows = []
    for name, profile in node.profiles.items():
        records = ", ".join(f"{n:,} {esc(e)}" for e, n in counts.get(name, {}).items())
        paths = "<br>".join(esc(f"/registry/{s.path}") for s in endpoints_for(profile))
        rows.append(
            f"<tr><td><b>{esc(name)}</b><br><small>{esc(profile.title)}</small></td>"
            f"<td><code>{esc(settings.registry_url(name))}</code><br>"
            f"<small>id {esc(settings.registry_id(name))}</small></td>"
            f"<td>{records}</td><td><small>{paths}</small></td></tr>"
        )
    queue = (
        ", ".join(
            f"{esc(k)}: {v:,}{'+' if k == DONE and v >= DONE_COUNT_CAP else ''}"
            for k, v in sorted(outbox.items())
        )
        or "empty"
    )
    security = (
        "tokens, signatures, replay protection and audit trail on"
        if settings.security.enabled
        else "DISABLED (local experiments only)"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dcihub console — {esc(settings.node_id)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem}}
table{{border-collapse:collapse;width:100%}}td,th{{border:1px solid #ccc;padding:.4rem;
vertical-align:top;text-align:left}}code{{font-size:.9em}}</style></head>
<body><h1>dcihub <small>{esc(__version__)}</small></h1>
<p>Node <b>{esc(settings.node_id)}</b> at <code>{esc(settings.base_url)}</code>;
store: {esc(node.store.dialect)}; security: {esc(security)}.</p>
<table><tr><th>Registry</th><th>Base URL</th><th>Records</th><th>DCI endpoints</th></tr>
{"".join(rows)}</table>
<p>Outbox (callbacks and async work): {queue}.</p>
<p><a href="/docs">API documentation</a> · <a href="/.well-known/jwks.json">JWKS</a> ·
<a href="/.well-known/locations.json">locations</a> · <a href="/healthz">health</a> ·
<a href="/metrics">metrics</a></p></body></html>"""
