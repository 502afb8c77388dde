"""Contract validator for the official DCI OpenAPI contracts.

The conformance kit (`dcihub conform ... --spec DIR`) and the project's contract tests use it
to check that a request, response or callback body validates against the matching schema of
`<spec_dir>/spec/*.yaml`:

    contract = load_contract(spec_dir, "social")
    contract.validate_request("/registry/sync/search", body)     # raises ContractError
    contract.validate_response("/registry/sync/search", reply)
    contract.validate_request("/registry/on-search", callback)   # callbacks are request bodies
                                                                # of the callback paths

Loading a spec:

1. parse the YAML;
2. apply the named patches below (DIGEST §6) to the parsed document -- the files are never
   edited;
3. fully dereference the `paths` section ourselves: `$ref`s may point through other `$ref`s
   and into `example` values, which Python `referencing` rejects (DIGEST §6 #23);
4. turn the OpenAPI 3.0 schema dialect into JSON Schema draft 7 (`nullable`, boolean
   `exclusiveMinimum`/`exclusiveMaximum`, drop `example`/`examples` annotations).

Validation uses `Draft7Validator` (OAS 3.0 schemas are a JSON Schema draft-4/5 dialect; the
core locations spec also uses the draft-6+ `const`) with format checking on: `date-time` is
checked by our own RFC 3339 checker (no `rfc3339-validator` dependency needed), `int32` and
`int64` by range checkers.
"""

from __future__ import annotations

import copy
import datetime
import functools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml
from jsonschema import Draft7Validator, FormatChecker
from jsonschema.exceptions import ValidationError

REGISTRIES = ("social", "crvs", "dr", "fr", "ibr", "ess")
CORE_APIS = ("authz", "jwks", "locations")
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
JSON = "application/json"


class ContractError(AssertionError):
    """A body violates the contract; the message lists every violation."""


class ContractLoadError(RuntimeError):
    """A spec cannot be turned into validators (unresolvable or cyclic `$ref`, unknown path)."""


# --------------------------------------------------------------------------------------------
# Public loaders
# --------------------------------------------------------------------------------------------


def load_contract(spec_dir: Path | str, registry: str) -> Contract:
    """Contract of a registry interface (`spec/<registry>_api_v1.0.0.yaml`); cached."""
    if registry not in REGISTRIES:
        raise ValueError(f"unknown registry {registry!r}; expected one of {REGISTRIES}")
    return _load(_spec_file(spec_dir, f"{registry}_api_v1.0.0.yaml"), registry)


def load_core_contract(spec_dir: Path | str, name: str) -> Contract:
    """Contract of a core API (`spec/<name>_core_api_v1.0.0.yaml`): authz, jwks, locations."""
    if name not in CORE_APIS:
        raise ValueError(f"unknown core API {name!r}; expected one of {CORE_APIS}")
    return _load(_spec_file(spec_dir, f"{name}_core_api_v1.0.0.yaml"), name)


def _spec_file(spec_dir: Path | str, filename: str) -> str:
    return str((Path(spec_dir) / "spec" / filename).resolve())


@functools.cache
def _load(spec_file: str, name: str) -> Contract:
    with open(spec_file, encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    applied = [patch.__name__ for patch in PATCHES[name] if patch(document)]
    paths = _Dereferencer(document).resolve(document.get("paths") or {})
    _convert_all_schemas(paths)
    return Contract(name, spec_file, paths, applied)


# --------------------------------------------------------------------------------------------
# Contract
# --------------------------------------------------------------------------------------------


class Contract:
    """Validators for the request and response bodies of one OpenAPI document.

    `paths` is the document's `paths` section, dereferenced and converted to JSON Schema."""

    def __init__(self, name: str, source: str, paths: dict, applied_patches: list[str]):
        self.name = name
        self.source = source
        self.applied_patches = tuple(applied_patches)
        self._paths = paths
        self._validators: dict[tuple[str, str, str], Draft7Validator] = {}

    @property
    def paths(self) -> list[str]:
        return list(self._paths)

    def request_schema(self, path: str, content_type: str = JSON) -> dict:
        """JSON Schema of the request body of `path` (a copy; refs resolved)."""
        return copy.deepcopy(self._request_schema(path, content_type))

    def response_schema(self, path: str) -> dict:
        """JSON Schema of the `default` response (else the first 2xx) of `path` (a copy).

        For async endpoints and callbacks this is the ack (`Response`)."""
        return copy.deepcopy(self._response_schema(path))

    def errors_request(self, path: str, body: Any, content_type: str = JSON) -> list[str]:
        return _collect_errors(self._validator("request", path, content_type), body)

    def errors_response(self, path: str, body: Any) -> list[str]:
        return _collect_errors(self._validator("response", path), body)

    def validate_request(self, path: str, body: Any, content_type: str = JSON) -> None:
        self._raise_if_any("request", path, self.errors_request(path, body, content_type))

    def validate_response(self, path: str, body: Any) -> None:
        self._raise_if_any("response", path, self.errors_response(path, body))

    def __repr__(self) -> str:
        return f"Contract({self.name!r}, {len(self._paths)} paths, patches={self.applied_patches})"

    def _raise_if_any(self, kind: str, path: str, errors: list[str]) -> None:
        if errors:
            lines = "\n".join(f"  - {error}" for error in errors)
            raise ContractError(
                f"{self.name} {path} {kind} body violates the contract "
                f"({len(errors)} violation(s)):\n{lines}"
            )

    def _validator(self, kind: str, path: str, content_type: str = JSON) -> Draft7Validator:
        key = (kind, path, content_type)
        if key not in self._validators:
            schema = (
                self._request_schema(path, content_type)
                if kind == "request"
                else self._response_schema(path)
            )
            self._validators[key] = Draft7Validator(schema, format_checker=FORMAT_CHECKER)
        return self._validators[key]

    def _operation(self, path: str) -> dict:
        if path not in self._paths:
            raise ContractLoadError(f"{self.name}: no path {path!r}; known: {self.paths}")
        operations = _operations(self._paths[path])
        if len(operations) != 1:
            raise ContractLoadError(f"{self.name} {path}: expected one operation")
        return operations[0]

    def _request_schema(self, path: str, content_type: str) -> dict:
        content = self._operation(path).get("requestBody", {}).get("content", {})
        if content_type not in content:
            raise ContractLoadError(
                f"{self.name} {path}: no {content_type} request body; has {list(content)}"
            )
        return content[content_type]["schema"]

    def _response_schema(self, path: str) -> dict:
        response = _main_response(self._operation(path).get("responses", {}))
        content = response.get("content", {})
        if JSON not in content:
            raise ContractLoadError(f"{self.name} {path}: main response has no {JSON} content")
        return content[JSON]["schema"]


def _operations(path_item: dict) -> list[dict]:
    return [path_item[m] for m in HTTP_METHODS if isinstance(path_item.get(m), dict)]


def _main_response(responses: dict) -> dict:
    """The `default` response, else the first 2xx (core APIs only declare `200`)."""
    by_code = {str(code): response for code, response in responses.items()}
    if "default" in by_code:
        return by_code["default"]
    for code in sorted(by_code):
        if code.startswith("2"):
            return by_code[code]
    raise ContractLoadError(f"no default or 2xx response among {list(by_code)}")


# --------------------------------------------------------------------------------------------
# Error reporting
# --------------------------------------------------------------------------------------------

_MAX_MESSAGE = 500


def _collect_errors(validator: Draft7Validator, body: Any) -> list[str]:
    """One line per violation: `<JSON path>: <message> [schema: <schema path>]`."""
    leaves = [leaf for error in validator.iter_errors(body) for leaf in _leaf_errors(error)]
    leaves.sort(key=lambda leaf: (list(map(str, leaf.absolute_path)), leaf.message))
    return list(dict.fromkeys(_format_error(leaf) for leaf in leaves))


def _leaf_errors(error: ValidationError) -> Iterator[ValidationError]:
    """For a failed anyOf/oneOf, descend into the branch that came closest to matching."""
    if error.validator in ("anyOf", "oneOf") and error.context:
        for sub_error in _closest_branch(error.context):
            yield from _leaf_errors(sub_error)
    else:
        yield error


def _closest_branch(context: list[ValidationError]) -> list[ValidationError]:
    """The branch whose errors lie deepest in the instance (it matched furthest), then the
    branch with the fewest errors."""
    branches: dict[Any, list[ValidationError]] = {}
    for sub_error in context:
        branches.setdefault(sub_error.schema_path[0], []).append(sub_error)
    return max(
        branches.values(),
        key=lambda errors: (max(len(e.absolute_path) for e in errors), -len(errors)),
    )


def _format_error(error: ValidationError) -> str:
    message = error.message
    if len(message) > _MAX_MESSAGE:
        message = message[:_MAX_MESSAGE] + "..."
    schema_path = "/".join(str(part) for part in error.absolute_schema_path)
    return f"{error.json_path}: {message} [schema: {schema_path}]"


# --------------------------------------------------------------------------------------------
# Format checking
# --------------------------------------------------------------------------------------------

_RFC3339_DATE_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-]([0-9]{2}):([0-9]{2}))"
)


def is_rfc3339_date_time(value: Any) -> bool:
    """RFC 3339 `date-time`: full date, time, and a mandatory `Z` or `±hh:mm` offset."""
    if not isinstance(value, str):
        return True  # format only constrains strings
    match = _RFC3339_DATE_TIME.fullmatch(value)
    if match is None:
        return False
    year, month, day, hour, minute, second = (int(group) for group in match.groups()[:6])
    try:
        datetime.date(year, month, day)
    except ValueError:
        return False
    offset_hour, offset_minute = match.group(7), match.group(8)
    if offset_hour is not None and (int(offset_hour) > 23 or int(offset_minute) > 59):
        return False
    return hour <= 23 and minute <= 59 and second <= 60  # 60 = leap second


def _integer_format(bits: int) -> Callable[[Any], bool]:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def check(value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return True  # format only constrains numbers
        return float(value).is_integer() and low <= value <= high

    return check


def _format_checker() -> FormatChecker:
    checker = FormatChecker()  # instance copy of jsonschema's registered checkers
    checker.checks("date-time")(is_rfc3339_date_time)
    checker.checks("int32")(_integer_format(32))
    checker.checks("int64")(_integer_format(64))
    return checker


FORMAT_CHECKER = _format_checker()


# --------------------------------------------------------------------------------------------
# Dereferencing
# --------------------------------------------------------------------------------------------


class _Dereferencer:
    """Replaces every internal `$ref` by (a dereferenced copy of) its target.

    OAS 3.0 ignores the siblings of `$ref`, so they are dropped. Pointers may traverse other
    `$ref`s and may point into `example` values. Each ref is resolved once (the result is
    shared); a ref that needs itself raises ContractLoadError instead of recursing forever
    (no spec here has recursive schemas)."""

    def __init__(self, root: Any):
        self._root = root
        self._resolved: dict[str, Any] = {}
        self._in_progress: set[str] = set()  # refs being resolved
        self._locating: set[str] = set()  # refs whose pointer is being walked

    def resolve(self, node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                return self._resolve_ref(ref)
            return {key: self.resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [self.resolve(item) for item in node]
        return node

    def _resolve_ref(self, ref: str) -> Any:
        if ref in self._resolved:
            return self._resolved[ref]
        if ref in self._in_progress:
            raise ContractLoadError(f"cyclic $ref {ref}")
        self._in_progress.add(ref)
        try:
            resolved = self.resolve(self._target(ref))
        finally:
            self._in_progress.discard(ref)
        self._resolved[ref] = resolved
        return resolved

    def _target(self, ref: str) -> Any:
        """The raw node `ref` points at, following `$ref`s met along the way."""
        if not ref.startswith("#"):
            raise ContractLoadError(f"external $ref not supported: {ref}")
        if ref in self._locating:
            raise ContractLoadError(f"cyclic $ref pointer {ref}")
        self._locating.add(ref)
        try:
            node = self._root
            for token in _pointer_tokens(ref):
                node = _step(self._follow_refs(node), token, ref)
            return node
        finally:
            self._locating.discard(ref)

    def _follow_refs(self, node: Any) -> Any:
        seen: set[str] = set()
        while isinstance(node, dict) and isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            if ref in seen:
                raise ContractLoadError(f"cyclic $ref chain through {ref}")
            seen.add(ref)
            node = self._target(ref)
        return node


def _step(node: Any, token: str, ref: str) -> Any:
    try:
        return node[int(token)] if isinstance(node, list) else node[token]
    except (KeyError, IndexError, ValueError, TypeError):
        raise ContractLoadError(f"$ref {ref} points to nowhere (at {token!r})") from None


def _pointer_tokens(ref: str) -> list[str]:
    pointer = unquote(ref[1:])
    if not pointer:
        return []
    return [token.replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/")]


# --------------------------------------------------------------------------------------------
# OpenAPI 3.0 schema -> JSON Schema draft 7
# --------------------------------------------------------------------------------------------

# keywords whose value is a schema or a list of schemas; and those holding a name -> schema map
_SUBSCHEMA_KEYWORDS = (
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "items",
    "additionalItems",
    "additionalProperties",
    "contains",
    "propertyNames",
    "if",
    "then",
    "else",
)
_SUBSCHEMA_MAP_KEYWORDS = ("properties", "patternProperties", "definitions")
_ANNOTATIONS_DROPPED = ("example", "examples")


def _convert_all_schemas(paths: dict) -> None:
    """Convert, in place, every request and response body schema of the dereferenced paths."""
    seen: set[int] = set()
    for path_item in paths.values():
        for operation in _operations(path_item):
            bodies = [operation.get("requestBody", {})]
            bodies += [r for r in operation.get("responses", {}).values() if isinstance(r, dict)]
            for body in bodies:
                for media in body.get("content", {}).values():
                    _convert_schema(media.get("schema"), seen)


def _convert_schema(schema: Any, seen: set[int]) -> None:
    """Walk one schema (shared subschemas once) and rewrite OAS-only keywords."""
    if not isinstance(schema, dict) or id(schema) in seen:
        return
    seen.add(id(schema))
    for keyword in _ANNOTATIONS_DROPPED:
        schema.pop(keyword, None)
    _convert_nullable(schema)
    _convert_exclusive_bounds(schema)
    for keyword, value in schema.items():
        if keyword in _SUBSCHEMA_MAP_KEYWORDS and isinstance(value, dict):
            subschemas = list(value.values())
        elif keyword in _SUBSCHEMA_KEYWORDS:
            subschemas = value if isinstance(value, list) else [value]
        else:
            continue
        for subschema in subschemas:
            _convert_schema(subschema, seen)


def _convert_nullable(schema: dict) -> None:
    """OAS `nullable: true` -> `null` added to `type` (and to `enum`)."""
    if not schema.pop("nullable", False):
        return
    if isinstance(schema.get("type"), str):
        schema["type"] = [schema["type"], "null"]
    if isinstance(schema.get("enum"), list) and None not in schema["enum"]:
        schema["enum"] = [*schema["enum"], None]


def _convert_exclusive_bounds(schema: dict) -> None:
    """Draft-4 style boolean `exclusiveMinimum`/`exclusiveMaximum` -> draft-7 numbers."""
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(schema.get(exclusive), bool):
            if schema.pop(exclusive) and bound in schema:
                schema[exclusive] = schema.pop(bound)


# --------------------------------------------------------------------------------------------
# Spec patches (applied to the parsed YAML; the files are never edited). Each returns True if
# it changed the document, so a patch that upstream made unnecessary silently becomes a no-op
# (see Contract.applied_patches).
# --------------------------------------------------------------------------------------------

_AMBIGUOUS_UNION_PROPERTIES = ("query", "filter", "attribute_value", "AttributeValue", "txn_status")
_ATTRIBUTE_VALUE_TYPES = ["string", "integer", "number", "boolean", "object"]


def patch_ambiguous_oneof(document: dict) -> bool:
    """DIGEST §6 #2, #3, #17, #23: oneOf -> anyOf for unions whose branches overlap.

    * the `query` / `filter` / `attribute_value` / `txn_status` unions (IdentifierTypeValue and
      ExpTemplate both match `{type, value: {...}}`; transaction_id and correlation_id are both
      strings), and
    * every AttributeValue `oneOf[string, integer, number, boolean, object]` -- an integer
      matches both `integer` and `number`, so `25` would fail.

    The `message` unions `oneOf[<payload>, EncryptedMessage]` stay as they are: in all six
    specs EncryptedMessage requires header/ciphertext/encrypted_key/tag/iv, so a plain payload
    cannot match both branches. `$ref`s pointing through a renamed `oneOf` are retargeted."""
    renamed: list[str] = []

    def walk(node: Any, pointer: str, key: str) -> None:
        if isinstance(node, dict):
            if "oneOf" in node and (
                key in _AMBIGUOUS_UNION_PROPERTIES or _is_attribute_value_union(node["oneOf"])
            ):
                node["anyOf"] = node.pop("oneOf")
                renamed.append(pointer)
            for child_key, child in node.items():
                walk(child, f"{pointer}/{_escape(child_key)}", str(child_key))
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, f"{pointer}/{index}", key)

    walk(document, "#", "")
    for pointer in renamed:
        _retarget_refs(document, f"{pointer}/oneOf/", f"{pointer}/anyOf/")
    return bool(renamed)


def _is_attribute_value_union(branches: Any) -> bool:
    return (
        isinstance(branches, list)
        and [branch.get("type") if isinstance(branch, dict) else None for branch in branches]
        == _ATTRIBUTE_VALUE_TYPES
    )


_SEARCH_REG_RECORDS = (
    # SearchResponse.search_response[].data.reg_records (DR: type object)
    "components/schemas/SearchResponse/properties/search_response/items/properties/data"
    "/properties/reg_records",
    # the SearchResponse copy that CRVS/FR txn_status points at (written under `example`)
    "components/schemas/TxnStatusResponse/properties/txnstatus_response/example/properties"
    "/search_response/items/properties/data/properties/reg_records",
)


def patch_search_reg_records_array(document: dict) -> bool:
    """DIGEST §6 #8: search responses always carry `reg_records` as an array (the project's
    choice, the fix the compliance repo applied to FR). `type: object` remains in DR's
    SearchResponse and in the SearchResponse copy used by CRVS/FR `txn_status` -> array of
    objects. Other `$ref`s to the old node (DR notify) keep the object form (notify carries
    one record object per event)."""
    changed = False
    for pointer in _SEARCH_REG_RECORDS:
        reg_records = _get(document, pointer)
        if not isinstance(reg_records, dict) or reg_records.get("type") != "object":
            continue
        _detach_refs(document, f"#/{pointer}", reg_records)
        parent_pointer, _, key = pointer.rpartition("/")
        _get(document, parent_pointer)[key] = {
            "description": reg_records.get("description", ""),
            "type": "array",
            "items": {"type": "object"},
        }
        changed = True
    return changed


def patch_fr_on_subscribe_operation(document: dict) -> bool:
    """DIGEST §1.2 note 1, §6 #23: FR `/registry/on-subscribe` has `post: null` with the
    operation's keys at path-item level -> move them under `post`."""
    path_item = document.get("paths", {}).get("/registry/on-subscribe")
    if not isinstance(path_item, dict) or path_item.get("post") is not None:
        return False
    operation_keys = [key for key in path_item if key not in (*HTTP_METHODS, "parameters")]
    path_item["post"] = {key: path_item.pop(key) for key in operation_keys}
    return True


def patch_ibr_security_schemes_typo(document: dict) -> bool:
    """DIGEST §6 #6: IBR spells `components.securitySchemas` -> `securitySchemes`
    (irrelevant to body validation; makes the document valid OAS)."""
    components = document.get("components", {})
    if "securitySchemas" not in components or "securitySchemes" in components:
        return False
    components["securitySchemes"] = components.pop("securitySchemas")
    return True


_IBR_BARE_SYNC_RESPONSES = {
    "/registry/sync/enrollment/updates": "on-notify",
    "/registry/sync/enrolled": "on-search",
}


def patch_ibr_sync_response_envelopes(document: dict) -> bool:
    """DIGEST §6 #19: IBR `sync/enrollment/updates` and `sync/enrolled` give a *schema*
    (`#/components/schemas/...Response`) where a Response Object belongs, so the response has
    no content. Project choice: reply with the standard sync envelope (callback header) whose
    `message` is that bare schema, with header action `on-notify` / `on-search`."""
    return _wrap_bare_sync_responses(document, _IBR_BARE_SYNC_RESPONSES)


_ESS_BARE_SYNC_RESPONSES = {"/registry/sync/check-enrollment": "on-search"}


def patch_ess_check_enrollment_envelope(document: dict) -> bool:
    """DIGEST §9: ESS `sync/check-enrollment` gives the `EnrolledResponse` *schema* as its
    `200` response, with no envelope. Project choice (as for the IBR's `sync/enrolled`): the
    standard sync envelope (callback header, action `on-search`) whose `message` is an
    `EnrolledResponse`."""
    return _wrap_bare_sync_responses(document, _ESS_BARE_SYNC_RESPONSES)


def _wrap_bare_sync_responses(document: dict, actions: dict[str, str]) -> bool:
    changed = False
    for path, action in actions.items():
        responses = _get(document, f"paths/{_escape(path)}/post/responses") or {}
        for code in ("default", "200"):
            bare = responses.get(code)
            if isinstance(bare, dict) and "#/components/schemas/" in bare.get("$ref", ""):
                responses[code] = _sync_envelope_response(bare["$ref"], action)
                changed = True
    return changed


def _sync_envelope_response(message_ref: str, action: str) -> dict:
    return {
        "description": "Sync response envelope (patched, DIGEST §6 #19, §9)",
        "content": {
            JSON: {
                "schema": {
                    "type": "object",
                    "properties": {
                        "signature": {"$ref": "#/components/schemas/MsgSignature"},
                        "header": {
                            "allOf": [
                                {"$ref": "#/components/schemas/MsgCallbackHeader_V1.0.0"},
                                {"properties": {"action": {"enum": [action]}}},
                            ]
                        },
                        "message": {
                            "type": "object",
                            "oneOf": [
                                {"$ref": message_ref},
                                {"$ref": "#/components/schemas/EncryptedMessage"},
                            ],
                        },
                    },
                    "required": ["header"],
                }
            }
        },
    }


def patch_sr_info_version(document: dict) -> bool:
    """DIGEST §6 #23: SR `info.version` is missing (indentation bug: `version: 1.0.0` ended up
    inside `info.description`) -> set `1.0.0` (irrelevant to body validation)."""
    info = document.get("info")
    if not isinstance(info, dict) or "version" in info:
        return False
    info["version"] = "1.0.0"
    return True


def patch_authz_expires_in_integer(document: dict) -> bool:
    """DIGEST §6 #6: token response `expires_in` is `type: string`; the project returns an
    integer (RFC 6749) and accepts strings -> integer or string."""
    expires_in = _get(
        document, "components/schemas/OAuth2ClientTokenResponse/properties/expires_in"
    )
    if not isinstance(expires_in, dict) or expires_in.get("type") != "string":
        return False
    del expires_in["type"]
    expires_in["anyOf"] = [{"type": "integer", "minimum": 0}, {"type": "string"}]
    return True


_LOCATIONS_REQUIRED_RENAMES = {"id": "identifier", "containedInPlace": "contained_in_place"}


def patch_locations_place_required(document: dict) -> bool:
    """DIGEST §6 #23: a location `Place` requires `id` and `containedInPlace`, which are not
    among its properties -> require the properties that carry them, `identifier` and
    `contained_in_place` (otherwise no correct payload can validate)."""
    responses = _get(document, f"paths/{_escape('/.well-known/locations.json')}/get/responses")
    place = _get(responses or {}, "200/content/application~1json/schema/properties/locations/items")
    if not isinstance(place, dict):
        return False
    required = place.get("required", [])
    if not any(name in _LOCATIONS_REQUIRED_RENAMES for name in required):
        return False
    place["required"] = [_LOCATIONS_REQUIRED_RENAMES.get(name, name) for name in required]
    return True


PATCHES: dict[str, tuple[Callable[[dict], bool], ...]] = {
    "social": (patch_ambiguous_oneof, patch_search_reg_records_array, patch_sr_info_version),
    "crvs": (patch_ambiguous_oneof, patch_search_reg_records_array),
    "dr": (patch_ambiguous_oneof, patch_search_reg_records_array),
    "fr": (
        patch_fr_on_subscribe_operation,
        patch_ambiguous_oneof,
        patch_search_reg_records_array,
    ),
    "ibr": (
        patch_ambiguous_oneof,
        patch_search_reg_records_array,
        patch_ibr_security_schemes_typo,
        patch_ibr_sync_response_envelopes,
    ),
    "ess": (
        patch_ambiguous_oneof,
        patch_search_reg_records_array,
        patch_ess_check_enrollment_envelope,
    ),
    "authz": (patch_authz_expires_in_integer,),
    "jwks": (),
    "locations": (patch_locations_place_required,),
}


# --------------------------------------------------------------------------------------------
# Small helpers on the raw document
# --------------------------------------------------------------------------------------------


def _escape(token: Any) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


def _get(node: Any, pointer: str) -> Any:
    """Raw node at a slash-separated, ~-escaped pointer (no `$ref` following), or None."""
    for token in pointer.split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or token not in node:
            return None
        node = node[token]
    return node


def _retarget_refs(node: Any, old_prefix: str, new_prefix: str) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(old_prefix):
            node["$ref"] = new_prefix + ref[len(old_prefix) :]
        for child in node.values():
            _retarget_refs(child, old_prefix, new_prefix)
    elif isinstance(node, list):
        for child in node:
            _retarget_refs(child, old_prefix, new_prefix)


def _detach_refs(node: Any, ref: str, target: Any) -> None:
    """Replace every `{"$ref": ref}` by a private copy of `target` (before `target` changes)."""
    if isinstance(node, dict):
        for key, child in node.items():
            if isinstance(child, dict) and child.get("$ref") == ref:
                node[key] = copy.deepcopy(target)
            else:
                _detach_refs(child, ref, target)
    elif isinstance(node, list):
        for index, child in enumerate(node):
            if isinstance(child, dict) and child.get("$ref") == ref:
                node[index] = copy.deepcopy(target)
            else:
                _detach_refs(child, ref, target)
