#!/usr/bin/env python3
"""Generate `src/dcihub/standard/codedirs/generated.py` from the DCI JSON-LD code directories.

Input: every `*.jsonld` under `<spec>/schemas/core/v1/code/` and
`<spec>/schemas/extensions/*/v1/code/` (spdci/schemas, Apache-2.0). The legacy `common/v1` tree
and `core/v1/api-schemas` are deliberately not read (DIGEST §6 #22).

The spec directory is `--spec-dir`, else `$DCIHUB_SPEC_DIR`, else `<project root>/../shared/dci`.

    python tools/gen_codedirs.py            # (re)write generated.py
    python tools/gen_codedirs.py --check    # exit 1 (with a diff summary) if it is stale

Exit status: 0 ok, 1 `--check` found a difference, 2 the reference files are missing or are not
what this script knows how to read (it fails loudly rather than guessing).

How a file becomes a directory
------------------------------
* A file holds one `@graph`; the node carrying `owl:oneOf` is the enumeration class, every other
  node is a member. Members are matched to the list by the *local part* of their JSON-LD id (the
  text after the last `:`), because prefixes are used inconsistently (`education_level:0` listed
  vs `category:0` defined, `case:2` vs `category:2`, `spfunction:` vs `spfunctions:`, ...). The
  wire code is that local part, e.g. `category:W` -> `W`.
* Codes come in the order of `owl:oneOf`; codes that are defined but not listed follow, in the
  order the file defines them. Labels (`rdfs:label`) are stripped and inner runs of whitespace
  collapsed (`' Industrial system'`, `'Treated or not-treated  wastewater'`).
* Every anomaly (duplicate id, listed-but-undefined, defined-but-unlisted, ambiguous label) must
  be acknowledged in `FIXES` below; an unexpected one is an error, so a changed upstream file
  forces a review of this table instead of silently producing something different.

Directory names (snake_case keys of `dcihub.standard.codedirs.get`)
-------------------------------------------------------------------
By default the key is the class name (local part of the class id) in snake_case without a
trailing `Enum`: `MaritalStatusEnum` -> `marital_status`, `FarmTypeEnum` -> `farm_type`,
`AssistanceUnitEnum` -> `assistance_unit`, `EnrollmentStatusEnum` -> `enrollment_status`,
`DisabilityTypeEnum` -> `disability_type`, `FunctionalLimitationType` ->
`functional_limitation_type` (both files exist with the same codes; both are kept). `NAMES`
overrides the odd ones, keyed by source file because one class name is reused by two files.
Keys must be unique, compared with underscores removed and doubled letters squashed (so that
`enrolment`/`enrollment` count as a collision). When two directories collide the extension is
prefixed: ESS `EnrolmentStatus` -> `ess_enrolment_status` (in `NAMES`) next to IBR
`enrollment_status`; a core/extension collision not settled in `NAMES` gets the extension's
registry prefixed automatically, anything else is an error asking for a `NAMES` entry.

Lists the digest mentions that no code file defines (RegistryType, RegistryRecordType,
group_type, payment_status, nationality, country, currency, ethnicity) are *not* generated:
nothing here invents values.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
OUTPUT = PROJECT_ROOT / "src" / "dcihub" / "standard" / "codedirs" / "generated.py"
SOURCE_GLOBS = ("core/v1/code/*.jsonld", "extensions/*/v1/code/*.jsonld")

# Source file (relative to schemas/) -> directory name, where the derived name is not the one we
# want. Everything not listed here uses the derived name (see module docstring).
NAMES: dict[str, str] = {
    # core
    "core/v1/code/EducationCode.jsonld": "education_level",  # class EducationCodeEnum
    "core/v1/code/RelationshipTypeEnum.jsonld": "relationship_type",  # class RelationshipEnum
    "core/v1/code/SexCategoryEnum.jsonld": "sex",
    # crvs
    "extensions/crvs/v1/code/VitalEventTypeEnum.jsonld": "vital_event",  # DIGEST §5.1 name
    # dr
    "extensions/dr/v1/code/DisabilityOnSet.jsonld": "disability_onset",
    "extensions/dr/v1/code/ImpairementType.jsonld": "impairment_type",  # misspelt class name
    # The ImpairmentLevel file reuses the class name FunctionalSeverityEnum of core (DIGEST §6
    # #22): it is named after the file, not the class.
    "extensions/dr/v1/code/ImpairmentLevel.jsonld": "impairment_level",
    # fr
    "extensions/fr/v1/code/AnimalsEnum.jsonld": "animal_type",
    "extensions/fr/v1/code/AquaCultureEnum.jsonld": "aquaculture",
    "extensions/fr/v1/code/CropEnduseEnum.jsonld": "crop_end_use",
    "extensions/fr/v1/code/MachineriesEnum.jsonld": "machinery_type",
    "extensions/fr/v1/code/MeasurmentUnitEnum.jsonld": "measurement_unit",  # misspelt class name
    # ess: EnrolmentStatus collides with IBR EnrollmentStatusEnum (`enrollment_status`)
    "extensions/ess/v1/code/EnrolmentStatus.jsonld": "ess_enrolment_status",
    # ibr
    "extensions/ibr/v1/code/InstitutionEnum.jsonld": "institution_type",
    "extensions/ibr/v1/code/SocialProtectionFunctionEnum.jsonld": "social_protection_function",
    # id
    "extensions/id/v1/code/TypeEnum.jsonld": "biometric_data_type",  # BiometricData.type
}

# Files under a code/ folder that are not enumerations. Each must really lack `owl:oneOf`.
NOT_CODE_DIRECTORIES: dict[str, str] = {
    # An RRULE-like object {freq, dtstart, interval, wkst, count, until}, not a list of codes.
    "extensions/ibr/v1/code/BenefitFrequency.jsonld": "RRULE-like object, not a code list",
}


@dataclass(frozen=True)
class Fixes:
    """Acknowledged defects of one source file (each use is commented where it is declared)."""

    # Local part -> wire code, applied to both the `owl:oneOf` list and the member ids.
    rename: Mapping[str, str] = field(default_factory=dict)
    # Position of a member node in `@graph` -> (its @id as found, the wire code to use instead).
    node_ids: Mapping[int, tuple[str, str]] = field(default_factory=dict)
    # Codes defined by a member node but missing from `owl:oneOf`: kept.
    unlisted: frozenset[str] = frozenset()
    # Codes in `owl:oneOf` that no member defines: dropped (we do not invent a label).
    undefined: frozenset[str] = frozenset()
    # Codes defined twice: the first label is the label, the later ones are extra accepted labels.
    duplicates: frozenset[str] = frozenset()
    # Codes whose label reads like another code (case-insensitively). Codes win in `normalise`,
    # so that label does not reach its own code; acknowledged here.
    code_like_labels: frozenset[str] = frozenset()
    # Wire code -> corrected label. The file's label stays accepted by `normalise` unless another
    # code already carries it.
    labels: Mapping[str, str] = field(default_factory=dict)


FIXES: dict[str, Fixes] = {
    # RelationshipTypeEnum: the owl:oneOf list and the defined ids disagree on 7 codes (DIGEST
    # §6 #22). The wire codes are the HL7 v3 RoleCode spellings of DIGEST §5.1, whichever side
    # of the file has them: the ids CHILDADOPT, CHILDFOST, FOSTMTH are corrected from the list,
    # the list entries MGGRNTH, GRANDSON, STEPSIS, STEPSIB from the ids.
    # Labels: CHLDFOST is labelled "foster son" like SONFOST (which would make the label
    # ambiguous); it gets the HL7 display name "foster child". Four obvious typos get the HL7
    # display name too (the file's spelling is still accepted). The code NEICE is kept as the
    # file and the digest spell it (HL7 itself spells it NIECE); with the label "niece", an input
    # "NIECE" still normalises to NEICE.
    "core/v1/code/RelationshipTypeEnum.jsonld": Fixes(
        rename={
            "CHILDADOPT": "CHLDADOPT",
            "CHILDFOST": "CHLDFOST",
            "FOSTMTH": "MTHFOST",
            "MGGRNTH": "MGGRMTH",
            "GRANDSON": "GRNDSON",
            "STEPSIS": "STPSIS",
            "STEPSIB": "STPSIB",
        },
        labels={
            "CHLDFOST": "foster child",
            "BRO": "brother",
            "FTWINBRO": "fraternal twin brother",
            "FTWINSIS": "fraternal twin sister",
            "FTWIN": "fraternal twin",
            "NEICE": "niece",
            "PUNCLE": "paternal uncle",
        },
        # HL7: SONC is "son", SON is "natural son". normalise("son") matches the code SON first.
        code_like_labels=frozenset({"SONC"}),
    ),
    # EducationCode: listed as `education_level:N`, defined as `category:N`; matching on the
    # local part handles it, nothing to declare.
    # EmploymentStatusEnum: defines 8 codes, lists 7; code 8 (contributing family workers) is
    # kept (DIGEST §5.1 lists 8).
    "core/v1/code/EmploymentStatusEnum.jsonld": Fixes(unlisted=frozenset({"8"})),
    # LandTenureEnum: `type:1` is defined twice ("Owner", then "Non-legal ownership/Squatting
    # illegally on land") and `type:7` is listed but never defined. Code 1 keeps the first label
    # and accepts the second one; no new code is made up for it and 7 is dropped.
    "extensions/fr/v1/code/LandTenureEnum.jsonld": Fixes(
        duplicates=frozenset({"1"}), undefined=frozenset({"7"})
    ),
    # EquipmentSource: the 7th member ("Provided by a government agency", graph node 7) has the
    # id `source:4` again; the list says `source:7` (DIGEST §5.1: 7 = government agency).
    "extensions/fr/v1/code/EquipmentSource.jsonld": Fixes(node_ids={7: ("source:4", "7")}),
    # MachineriesEnum: `type:37` (UAVs and robots) is defined but not listed: kept.
    "extensions/fr/v1/code/MachineriesEnum.jsonld": Fixes(unlisted=frozenset({"37"})),
    # ProgrammeTypeEnum: the list has `programme14` (no colon) for `programme:14`, and lists a
    # 15th code `programme:15` that is never defined (14 codes, DIGEST §5.1): 15 is dropped.
    "extensions/ibr/v1/code/ProgrammeTypeEnum.jsonld": Fixes(
        rename={"programme14": "14"}, undefined=frozenset({"15"})
    ),
    # ESS UnemploymentReason: defines 8 codes, lists 6; 7 (military or community service) and
    # 8 (other reasons) are kept (DIGEST §5.1 says 1-8).
    "extensions/ess/v1/code/UnemploymentReason.jsonld": Fixes(unlisted=frozenset({"7", "8"})),
    # ImpairmentLevel reuses the class name FunctionalSeverityEnum: handled in NAMES.
}


class SpecError(Exception):
    """The reference files are missing, invalid, or contain an unacknowledged anomaly."""


@dataclass(frozen=True)
class Directory:
    name: str
    title: str
    registry: str
    source: str
    codes: tuple[tuple[str, str], ...]
    aliases: tuple[tuple[str, str], ...]  # (extra accepted label, wire code)


# --------------------------------------------------------------------------------------------
# helpers


def resolve_spec_dir(option: str | None) -> Path:
    if option:
        return Path(option)
    env = os.environ.get("DCIHUB_SPEC_DIR")
    if env:
        return Path(env)
    return PROJECT_ROOT.parent / "shared" / "dci"


def local_part(json_ld_id: str) -> str:
    return json_ld_id.rsplit(":", 1)[-1]


def clean(text: str) -> str:
    return " ".join(text.split())


def label_key(text: str) -> str:
    """Same key as `dcihub.standard.codedirs` uses to match labels."""
    return re.sub(r"[\s_\-]+", "", text).casefold()


def snake_name(class_name: str) -> str:
    base = class_name[:-4] if class_name.endswith("Enum") and len(class_name) > 4 else class_name
    words = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", base)
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", words)
    return words.lower()


def collision_key(name: str) -> str:
    return re.sub(r"(.)\1+", r"\1", name.replace("_", ""))


def _reject_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [key for key, _ in pairs]
    duplicated = sorted({key for key in keys if keys.count(key) > 1})
    if duplicated:
        raise ValueError(f"duplicate JSON keys {duplicated}")
    return dict(pairs)


def _reject_constant(constant: str) -> object:
    raise ValueError(f"non-standard JSON constant {constant}")


def load_json(path: Path, source: str) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{source}: cannot read: {exc}") from exc
    try:
        # Strict: no trailing commas, comments, NaN, or duplicate keys; never guess.
        return json.loads(
            text,
            object_pairs_hook=_reject_duplicate_keys,
            parse_constant=_reject_constant,
        )
    except ValueError as exc:
        raise SpecError(f"{source}: not valid JSON: {exc}") from exc


def _string(node: Mapping[str, object], key: str, where: str) -> str:
    value = node.get(key)
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{where}: {key} must be a non-empty string, got {value!r}")
    return value


def _expect(found: set[str], declared: frozenset[str], what: str, source: str) -> None:
    if found != set(declared):
        raise SpecError(
            f"{source}: {what} are {sorted(found)} but FIXES declares {sorted(declared)}; "
            "review the file and update FIXES in tools/gen_codedirs.py"
        )


# --------------------------------------------------------------------------------------------
# reading


def read_directory(path: Path, source: str) -> Directory | None:
    """The directory one file defines, or None for a declared non-enumeration."""
    doc = load_json(path, source)
    graph = doc.get("@graph") if isinstance(doc, dict) else None
    if source in NOT_CODE_DIRECTORIES:
        if isinstance(graph, list) and any(
            isinstance(node, dict) and "owl:oneOf" in node for node in graph
        ):
            raise SpecError(f"{source}: declared not a code list but now has owl:oneOf")
        return None
    if not isinstance(graph, list) or not all(isinstance(node, dict) for node in graph):
        raise SpecError(f"{source}: expected an @graph list of objects")
    classes = [i for i, node in enumerate(graph) if "owl:oneOf" in node]
    if len(classes) != 1:
        raise SpecError(f"{source}: expected exactly one node with owl:oneOf, found {len(classes)}")
    class_node = graph[classes[0]]
    class_name = local_part(_string(class_node, "@id", source))
    title = clean(_string(class_node, "rdfs:label", source))
    fixes = FIXES.get(source, Fixes())

    def code_of(json_ld_id: str) -> str:
        code = local_part(json_ld_id)
        return fixes.rename.get(code, code)

    one_of = class_node["owl:oneOf"]
    if not isinstance(one_of, list) or not all(isinstance(x, str) for x in one_of):
        raise SpecError(f"{source}: owl:oneOf must be a list of ids")
    listed = [code_of(x) for x in one_of]
    if len(set(listed)) != len(listed):
        raise SpecError(f"{source}: owl:oneOf lists a code twice: {listed}")

    defined: list[tuple[str, str]] = []
    seen_node_fixes: set[int] = set()
    for index, node in enumerate(graph):
        if index == classes[0]:
            continue
        where = f"{source} @graph[{index}]"
        node_id = _string(node, "@id", where)
        if index in fixes.node_ids:
            expected, code = fixes.node_ids[index]
            if node_id != expected:
                raise SpecError(f"{where}: FIXES expects id {expected!r}, found {node_id!r}")
            seen_node_fixes.add(index)
        else:
            code = code_of(node_id)
        if not code:
            raise SpecError(f"{where}: empty code in id {node_id!r}")
        defined.append((code, clean(_string(node, "rdfs:label", where))))
    if seen_node_fixes != set(fixes.node_ids):
        raise SpecError(f"{source}: FIXES.node_ids refers to missing nodes")

    defined_codes = [code for code, _ in defined]
    _expect(
        {c for c in defined_codes if defined_codes.count(c) > 1},
        fixes.duplicates,
        "codes defined twice",
        source,
    )
    _expect(set(listed) - set(defined_codes), fixes.undefined, "listed but undefined", source)
    _expect(set(defined_codes) - set(listed), fixes.unlisted, "defined but unlisted", source)

    labels: dict[str, str] = {}
    aliases: list[tuple[str, str]] = []
    for code, label in defined:
        if code in labels:
            aliases.append((label, code))  # a duplicate id: an extra accepted label
        else:
            labels[code] = label
    for code, label in fixes.labels.items():
        if code not in labels:
            raise SpecError(f"{source}: FIXES.labels names unknown code {code!r}")
        original = labels[code]
        labels[code] = label
        others = {label_key(text) for other, text in labels.items() if other != code}
        if label_key(original) != label_key(label) and label_key(original) not in others:
            aliases.append((original, code))

    order = [c for c in listed if c in labels] + [
        c for c in dict.fromkeys(defined_codes) if c not in listed
    ]
    codes = tuple((code, labels[code]) for code in order)
    check_unambiguous(source, codes, aliases, fixes.code_like_labels)
    registry = "core" if source.startswith("core/") else source.split("/")[1]
    name = NAMES.get(source) or snake_name(class_name)
    return Directory(name, title, registry, source, codes, tuple(aliases))


def check_unambiguous(
    source: str,
    codes: Iterable[tuple[str, str]],
    aliases: Iterable[tuple[str, str]],
    code_like_labels: frozenset[str],
) -> None:
    """Every code (case-insensitively), label and integer value must point at one code."""
    folded: dict[str, str] = {}
    numbers: dict[int, str] = {}
    keys: dict[str, str] = {}
    code_like: set[str] = set()
    pairs = list(codes)
    for code, _ in pairs:
        other = folded.setdefault(code.casefold(), code)
        if other != code:
            raise SpecError(f"{source}: codes {other!r} and {code!r} differ only in case")
        if code.isascii() and code.isdigit():
            other = numbers.setdefault(int(code), code)
            if other != code:
                raise SpecError(f"{source}: codes {other!r} and {code!r} are the same number")
    for label, code in [*((label, code) for code, label in pairs), *aliases]:
        key = label_key(label)
        if not key:
            raise SpecError(f"{source}: label {label!r} of {code!r} is empty once normalised")
        other = keys.setdefault(key, code)
        if other != code:
            raise SpecError(f"{source}: label {label!r} is ambiguous ({other!r} and {code!r})")
        shadow = folded.get(label.strip().casefold())
        if shadow is not None and shadow != code:
            code_like.add(code)
    _expect(code_like, code_like_labels, "codes with a label that is another code", source)


def build(spec_dir: Path) -> list[Directory]:
    schemas = spec_dir / "schemas"
    if not (schemas / "core" / "v1" / "code").is_dir():
        raise SpecError(f"no schemas/core/v1/code under {spec_dir} (use --spec-dir)")
    paths = sorted({p for pattern in SOURCE_GLOBS for p in schemas.glob(pattern)})
    found: list[Directory] = []
    for path in paths:
        source = path.relative_to(schemas).as_posix()
        result = read_directory(path, source)
        if result is not None:
            found.append(result)
    sources = {d.source for d in found} | set(NOT_CODE_DIRECTORIES)
    stale = sorted((set(NAMES) | set(FIXES)) - sources)
    if stale:
        raise SpecError(f"NAMES/FIXES refer to files that do not exist: {stale}")
    return assign_unique_names(found)


def assign_unique_names(directories: list[Directory]) -> list[Directory]:
    by_key: dict[str, list[Directory]] = {}
    for d in directories:
        by_key.setdefault(collision_key(d.name), []).append(d)
    renamed: list[Directory] = []
    for group in by_key.values():
        for d in group:
            others = [o for o in group if o is not d]
            if any(o.registry == "core" for o in others) and d.registry != "core":
                if d.source not in NAMES:
                    d = replace(d, name=f"{d.registry}_{d.name}")
            renamed.append(d)
    names: dict[str, str] = {}
    for d in renamed:
        other = names.setdefault(collision_key(d.name), d.source)
        if other != d.source:
            raise SpecError(
                f"directory names collide: {d.name!r} ({d.source}) and {other}; add to NAMES"
            )
        if not re.fullmatch(r"[a-z][a-z0-9_]*", d.name):
            raise SpecError(f"{d.source}: name {d.name!r} is not snake_case; add to NAMES")
    return sorted(renamed, key=lambda d: d.name)


# --------------------------------------------------------------------------------------------
# writing


HEADER = '''\
"""DCI code directories, generated from the spdci/schemas JSON-LD files (Apache-2.0).

DO NOT EDIT. Regenerate with `python tools/gen_codedirs.py` (or `make codedirs`); the tests check
that this file matches a fresh generation. Use it through `dcihub.standard.codedirs`.
Each entry: key, class label, registry, source file (relative to schemas/), codes in order as
(wire code, label), and extra accepted labels as (label, wire code).
"""

from __future__ import annotations

from typing import Any

DIRECTORIES: tuple[dict[str, Any], ...] = (
'''


def py_str(text: str) -> str:
    # JSON string syntax is valid Python; keep non-ASCII letters as they are in the source.
    return json.dumps(text, ensure_ascii=False)


def render(directories: Iterable[Directory]) -> str:
    out = [HEADER]
    for d in directories:
        out.append("    {\n")
        for key in ("name", "title", "registry", "source"):
            out.append(f"        {py_str(key)}: {py_str(getattr(d, key))},\n")
        for key, pairs in (("codes", d.codes), ("aliases", d.aliases)):
            if not pairs:
                out.append(f"        {py_str(key)}: (),\n")
                continue
            if len(pairs) == 1:  # the layout `ruff format` gives a one-element tuple
                ((first, second),) = pairs
                line = f"        {py_str(key)}: (({py_str(first)}, {py_str(second)}),),\n"
                if len(line) <= 101:  # 100 characters plus the newline
                    out.append(line)
                    continue
            out.append(f"        {py_str(key)}: (\n")
            for first, second in pairs:
                out.append(f"            ({py_str(first)}, {py_str(second)}),\n")
            out.append("        ),\n")
        out.append("    },\n")
    out.append(")\n")
    return "".join(out)


def generate(spec_dir: Path) -> str:
    return render(build(spec_dir))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec-dir", help="DCI reference material (contains schemas/)")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="file to write or check")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the output file is not up to date"
    )
    args = parser.parse_args(argv)
    spec_dir = resolve_spec_dir(args.spec_dir)
    try:
        text = generate(spec_dir)
    except SpecError as exc:
        print(f"gen_codedirs: error: {exc}", file=sys.stderr)
        return 2
    output: Path = args.output
    if args.check:
        current = output.read_text(encoding="utf-8") if output.exists() else ""
        if current == text:
            print(f"{output} is up to date")
            return 0
        diff = list(
            difflib.unified_diff(
                current.splitlines(), text.splitlines(), "committed", "generated", lineterm=""
            )
        )
        changed = sum(1 for line in diff[2:] if line[:1] in "+-")
        print(f"{output} is stale: {changed} changed lines; run python tools/gen_codedirs.py")
        print("\n".join(diff[:60]))
        if len(diff) > 60:
            print(f"... ({len(diff) - 60} more diff lines)")
        return 1
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
