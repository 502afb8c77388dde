"""docs/registries.md, rendered from the registry profiles (the single source of truth).

`tools/gen_registry_docs.py` writes it; a test checks it is current. Every registered profile
gets a section, so a new profile appears without a change here.
"""

from __future__ import annotations

from collections.abc import Iterable

from .server.node import endpoints_for
from .standard import codedirs
from .standard.profiles import PROFILES
from .standard.profiles.base import Attribute, Entity, RegistryProfile


def attribute_row(attr: Attribute) -> str:
    kind: str = attr.type
    if attr.multi:
        kind += ", several values"
    if attr.derived == "age":
        kind = "int (derived from birth_date at query time)"
    elif attr.derived == "is_set":
        kind = f"bool (derived: {attr.source} is recorded)"
    codes = ""
    if attr.code_dir:
        directory = codedirs.get(attr.code_dir)
        shown = list(directory.codes.items())
        codes = ", ".join(f"`{c}` {label}" for c, label in shown[:12])
        if len(shown) > 12:
            codes += f", … ({len(shown)} codes in `{attr.code_dir}`)"
    aliases = ", ".join(f"`{a}`" for a in attr.aliases[:6])
    if len(attr.aliases) > 6:
        aliases += ", …"
    return f"| `{attr.name}` | {kind} | `{attr.path}` | {aliases} | {codes} |"


def entity_section(profile: RegistryProfile, entity: Entity) -> list[str]:
    lines = [f"### {entity.name}", ""]
    if entity.description:
        lines += [f"{entity.description[0].upper()}{entity.description[1:]}.", ""]
    if entity.parent:
        lines += [
            f"Embedded in `{entity.parent}` records at `{entity.embedded_at}`; queries on "
            f"either may name the other's attributes.",
            "",
        ]
    names = ", ".join(f"`{a}`" for a in entity.aliases)
    lines += [
        f"- Also named (response_entity / collection / reg_record_type): {names}",
        f"- Identifier types: {', '.join(f'`{t}`' for t in entity.identifier_types)} "
        f"(read from {', '.join(f'`{p}`' for p in entity.identifier_paths)})",
        "",
    ]
    lines += [
        "| attribute | type | path in the record | also accepted as | codes |",
        "|---|---|---|---|---|",
    ]
    lines += [attribute_row(a) for a in entity.attributes]
    return lines + [""]


def registry_section(profile: RegistryProfile) -> list[str]:
    lines = [
        f"## `{profile.name}` — {profile.title}",
        "",
        f"`reg_type` `{profile.reg_type}`; record types "
        f"{', '.join(f'`{e.name}`' for e in profile.entities)} (default "
        f"`{profile.default_entity}`); txn_type {', '.join(profile.txn_types)}.",
        "",
        "Endpoints (after `/" + profile.name + "`):",
        "",
    ]
    for spec in endpoints_for(profile):
        kind = "async (ACK, then callback)" if spec.asynchronous else "sync"
        lines.append(f"- `POST /registry/{spec.path}` — action `{spec.action}`, {kind}")
    for special in profile.special_endpoints:
        lines.append(f"  - `/registry/{special.path}`: {special.summary}")
    lines.append("")
    for entity in profile.entities:
        lines += entity_section(profile, entity)
    return lines


def render(profiles: Iterable[RegistryProfile] | None = None) -> str:
    lines = [
        "# Registries, record types and searchable attributes",
        "",
        "Generated from the registry profiles (`src/dcihub/standard/profiles/`) by "
        "`tools/gen_registry_docs.py`; do not edit by hand.",
        "",
        "Attribute names, record paths and aliases are all accepted in `expression` and "
        "`predicate` queries and in `sort`; identifier types in `idtype-value` queries (and "
        "as attribute names with `eq`/`in`). Code attributes take the code or its label "
        '(`"W"` or `"Widow"`). Values of unknown codes are refused with the list of '
        "allowed codes.",
        "",
    ]
    for profile in PROFILES.values() if profiles is None else profiles:
        lines += registry_section(profile)
    return "\n".join(lines).rstrip() + "\n"
