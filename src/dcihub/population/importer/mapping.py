"""The mapping file of an import (TOML): which source column becomes which field of the
registry's records, with code translations, date formats, identifier types, constants,
required fields and household grouping. `load_mapping` reads and checks it against the
registry's profile; a problem is a `MappingError` naming the file, the key and (where it can
be found) the line at fault.

The reference of the format is docs/import.md."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from ...standard import codedirs
from ...standard.profiles.base import (
    Attribute,
    Entity,
    RegistryProfile,
    canonical_id_type,
    to_bool,
    to_number,
)


class MappingError(ValueError):
    """The mapping cannot be used; the message (one line) names the file, key and line."""


_MISSING = object()


class Reject(ValueError):
    """One value of one row fails validation: the field (or column) and the reason."""

    def __init__(self, field: str, reason: str, column: str = "", value: Any = None) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason
        self.column = column
        self.value = value


FORMATS = ("csv", "jsonl", "sql")
_TOP_KEYS = {"registry", "entity", "source", "record", "identifiers", "fields", "group"}
_SOURCE_KEYS = {
    "format",
    "encoding",
    "delimiter",
    "quotechar",
    "header",
    "columns",
    "url",
    "query",
}
_RECORD_KEYS = {"id", "type", "date_formats"}
_FIELD_KEYS = {
    "column",
    "to",
    "value",
    "default",
    "codes",
    "format",
    "required",
    "raw",
    "split",
    "strict_codes",
}
_IDENT_KEYS = {"column", "type", "path", "value", "required"}
_GROUP_KEYS = {"key", "sorted", "size", "id", "type", "identifiers", "fields"}


@dataclass(frozen=True)
class FieldMap:
    """One target field: where its value comes from and how it is checked."""

    name: str  # where it is declared, for messages: fields[2]
    target: str  # as written in the mapping
    path: tuple[tuple[str, bool], ...]  # (segment, is list of one object)
    attribute: Attribute | None  # None: a raw field, stored as given
    column: str | None
    constant: Any = None
    default: Any = None
    codes: dict[str, str] = field(default_factory=dict)
    formats: tuple[str, ...] = ()
    required: bool = False
    split: str | None = None
    # source text -> value (or the Reject) of a code or date field: such values repeat a lot
    _seen: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def label(self) -> str:
        return self.attribute.name if self.attribute is not None else self.target

    def convert(self, raw: Any) -> Any:
        """The field's value from a source value (None: empty); Reject when it is invalid."""
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            raw = self.default
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            if self.required:
                raise self._reject("is required but empty", raw)
            return None
        attr = self.attribute
        if attr is not None and attr.multi:
            parts = raw if isinstance(raw, list) else _split(raw, self.split)
            values = [self._one(p) for p in parts]
            return [v for v in values if v is not None] or None
        if self.split is not None and isinstance(raw, str):
            return [self._one(p) for p in _split(raw, self.split)]
        return self._one(raw)

    def _one(self, raw: Any) -> Any:
        attr = self.attribute
        if isinstance(raw, str) and attr is not None and attr.type in ("code", "date"):
            found = self._seen.get(raw, _MISSING)
            if found is _MISSING:
                try:
                    found = self._convert(raw)
                except Reject as exc:
                    found = exc
                if len(self._seen) >= 100_000:
                    self._seen.clear()
                self._seen[raw] = found
            if isinstance(found, Reject):
                raise self._reject(found.reason, raw)
            return found
        return self._convert(raw)

    def _convert(self, raw: Any) -> Any:
        if isinstance(raw, date):  # a database's date or timestamp column
            raw = raw.isoformat()
        elif not isinstance(raw, str | int | float | bool | list | dict):
            raw = str(raw)  # Decimal and the like
        if isinstance(raw, str):
            raw = raw.strip()
            if not raw:
                return None
        if self.codes:
            key = str(raw)
            raw = self.codes.get(key, self.codes.get(key.casefold(), raw))
        attr = self.attribute
        if attr is None:
            return raw
        if attr.type == "code":
            if attr.code_dir is None:
                return str(raw)
            directory = codedirs.get(attr.code_dir)
            code = directory.normalise(raw)
            if code is None:
                known = ", ".join(list(directory.codes)[:12])
                more = ", ..." if len(directory.codes) > 12 else ""
                raise self._reject(f"{raw!r} is not a code of {attr.code_dir} ({known}{more})", raw)
            return code
        if attr.type == "date":
            return self._date(raw)
        if attr.type in ("int", "float"):
            number = to_number(raw, attr.type == "int")
            if number is None:
                kind = "a whole number" if attr.type == "int" else "a number"
                raise self._reject(f"{raw!r} is not {kind}", raw)
            return number
        if attr.type == "bool":
            flag = to_bool(raw)
            if flag is None:
                raise self._reject(f"{raw!r} is not true or false (yes/no, 1/0)", raw)
            return flag
        return str(raw)

    def _date(self, raw: Any) -> str:
        text = str(raw).strip()
        for fmt in self.formats:
            try:
                return datetime.strptime(text, fmt).date().isoformat()
            except ValueError:
                continue
        try:
            return datetime.fromisoformat(text).date().isoformat()
        except ValueError:
            pass
        formats = " or ".join([*self.formats, "YYYY-MM-DD"])
        raise self._reject(f"{text!r} is not a date ({formats})", raw)

    def _reject(self, reason: str, raw: Any) -> Reject:
        return Reject(self.label, reason, self.column or "", raw)


@dataclass(frozen=True)
class IdentifierMap:
    name: str
    id_type: str
    column: str | None
    constant: str | None
    paths: tuple[str, ...]
    required: bool = True


@dataclass(frozen=True)
class Shape:
    """How a row (or a household) becomes one record of `entity`."""

    entity: Entity
    type_name: str
    id_template: str | None
    identifiers: tuple[IdentifierMap, ...]
    fields: tuple[FieldMap, ...]


@dataclass(frozen=True)
class Group:
    """Rows sharing `key` become one record of the parent entity, the rows embedded in it."""

    key: str
    sorted: bool
    size: FieldMap | None
    shape: Shape
    embedded_at: str


@dataclass(frozen=True)
class Source:
    format: str | None = None
    encoding: str = "utf-8"
    delimiter: str = ","
    quotechar: str = '"'
    header: bool = True
    columns: tuple[str, ...] = ()
    url: str | None = None
    query: str | None = None


@dataclass(frozen=True)
class Mapping:
    path: Path
    registry: str
    profile: RegistryProfile
    source: Source
    shape: Shape  # of one row
    group: Group | None

    @property
    def top(self) -> Entity:
        return self.group.shape.entity if self.group is not None else self.shape.entity

    @property
    def key_identifier(self) -> IdentifierMap | None:
        """The identifier records are matched by (the first one), None when there is none."""
        shape = self.group.shape if self.group is not None else self.shape
        return shape.identifiers[0] if shape.identifiers else None

    def columns(self) -> set[str]:
        """Every source column the mapping reads."""
        used: set[str] = set()
        shapes = [self.shape] + ([self.group.shape] if self.group is not None else [])
        for shape in shapes:
            used.update(f.column for f in shape.fields if f.column)
            used.update(i.column for i in shape.identifiers if i.column)
            used.update(_template_columns(shape.id_template))
        if self.group is not None:
            used.add(self.group.key)
        return used


def _template_columns(template: str | None) -> set[str]:
    return set(re.findall(r"\{([^{}]+)\}", template or ""))


# ---------------------------------------------------------------------------------------------
# loading


def load_mapping(path: Path, registry: str, profile: RegistryProfile) -> Mapping:
    """Read and check the mapping at `path` for `registry`; MappingError says what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MappingError(f"no mapping file {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(f"cannot read the mapping file {path}: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{path}: not valid TOML: {exc}") from None
    return _Loader(path, text, registry, profile).load(data)


class _Loader:
    def __init__(self, path: Path, text: str, registry: str, profile: RegistryProfile) -> None:
        self.path = path
        self.lines = text.splitlines()
        self.registry = registry
        self.profile = profile

    def fail(self, key: str, message: str, table: str = "", index: int = 0) -> MappingError:
        line = self._line_of(table, index, key.rsplit(".", 1)[-1].split("[")[0])
        where = f"{self.path}:{line}" if line else str(self.path)
        return MappingError(f"{where}: {key}: {message}")

    def _line_of(self, table: str, index: int, key: str) -> int | None:
        """The line of `key` in the `index`-th `[table]`/`[[table]]` (best effort)."""
        start, seen = 0, -1
        if table:
            pattern = re.compile(rf"^\s*\[\[?\s*{re.escape(table)}\s*\]\]?\s*(#.*)?$")
            for number, line in enumerate(self.lines):
                if pattern.match(line):
                    seen += 1
                    if seen == index:
                        start = number
                        break
            else:
                return None
        key_re = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
        for number in range(start, len(self.lines)):
            line = self.lines[number]
            if number > start and table and line.lstrip().startswith("["):
                break
            if key_re.match(line):
                return number + 1
        return start + 1 if table else None

    def check_keys(self, data: Any, known: set[str], where: str, table: str, index: int) -> None:
        if not isinstance(data, dict):
            raise self.fail(where, "must be a table", table, index)
        for key in data:
            if key not in known:
                raise self.fail(
                    f"{where}.{key}" if where else key,
                    f"unknown key (known: {', '.join(sorted(known))})",
                    table,
                    index,
                )

    def load(self, data: dict[str, Any]) -> Mapping:
        self.check_keys(data, _TOP_KEYS, "", "", 0)
        named = data.get("registry")
        if named is not None and named != self.registry:
            raise self.fail(
                "registry", f"the mapping is for {named!r}, the import is into {self.registry!r}"
            )
        source = self.source(data.get("source", {}))
        record = data.get("record", {})
        self.check_keys(record, _RECORD_KEYS, "record", "record", 0)
        formats = self.formats(record.get("date_formats", []), "record.date_formats", "record")
        group_data = data.get("group")
        tops = self.profile.top_entities
        if group_data is not None:
            self.check_keys(group_data, _GROUP_KEYS, "group", "group", 0)
            parent = tops[0]
            children = [c for c in self.profile.children(parent) if c.embedded_at]
            if not children:
                raise self.fail(
                    "group",
                    f"the {self.profile.title} embeds no records in its {parent.name} "
                    "records: rows cannot be grouped",
                    "group",
                )
            entity = self.entity(data.get("entity"), children, "entity")
        else:
            entity = self.entity(data.get("entity"), tops, "entity")
        shape = self.shape(
            entity,
            record.get("id"),
            record.get("type"),
            data.get("identifiers", []),
            data.get("fields", []),
            formats,
            "",
        )
        group = self.group(group_data, entity, formats) if group_data is not None else None
        if group is None and not shape.identifiers and shape.id_template is None:
            if entity.key is None:
                raise self.fail(
                    "identifiers",
                    "give at least one identifier (records are matched by it), "
                    "or record.id, a template of the record key",
                )
        return Mapping(self.path, self.registry, self.profile, source, shape, group)

    def entity(self, name: Any, allowed: list[Entity], key: str) -> Entity:
        if name is None:
            return allowed[0]
        if not isinstance(name, str):
            raise self.fail(key, "must be a record type name")
        found = self.profile.find_entity(name)
        if found is None or found not in allowed:
            names = ", ".join(e.name for e in allowed)
            raise self.fail(key, f"{name!r} is not a record type here (use {names})")
        return found

    def source(self, data: Any) -> Source:
        self.check_keys(data, _SOURCE_KEYS, "source", "source", 0)
        fmt = data.get("format")
        if fmt is not None and fmt not in FORMATS:
            raise self.fail("source.format", f"{fmt!r}: use one of {', '.join(FORMATS)}", "source")
        encoding = data.get("encoding", "utf-8")
        try:
            "".encode(encoding)
        except (LookupError, TypeError):
            raise self.fail("source.encoding", f"unknown encoding {encoding!r}", "source") from None
        delimiter = data.get("delimiter", ",")
        if not isinstance(delimiter, str) or len(delimiter) != 1:
            raise self.fail("source.delimiter", "must be one character", "source")
        quotechar = data.get("quotechar", '"')
        if not isinstance(quotechar, str) or len(quotechar) != 1:
            raise self.fail("source.quotechar", "must be one character", "source")
        header = data.get("header", True)
        if not isinstance(header, bool):
            raise self.fail("source.header", "must be true or false", "source")
        columns = data.get("columns", [])
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise self.fail("source.columns", "must be a list of column names", "source")
        if not header and not columns:
            raise self.fail(
                "source.columns", "name the columns when the file has no header line", "source"
            )
        for key in ("url", "query"):
            if key in data and not isinstance(data[key], str):
                raise self.fail(f"source.{key}", "must be a string", "source")
        return Source(
            fmt,
            encoding,
            delimiter,
            quotechar,
            header,
            tuple(columns),
            data.get("url"),
            data.get("query"),
        )

    def formats(self, value: Any, key: str, table: str, index: int = 0) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(f, str) for f in items):
            raise self.fail(key, "must be a date format (e.g. '%d/%m/%Y') or a list", table, index)
        for fmt in items:
            if "%" not in fmt:
                raise self.fail(
                    key, f"{fmt!r} is not a date format (e.g. '%d/%m/%Y')", table, index
                )
        return tuple(items)

    def shape(
        self,
        entity: Entity,
        id_template: Any,
        type_name: Any,
        identifiers: Any,
        fields: Any,
        formats: tuple[str, ...],
        prefix: str,
    ) -> Shape:
        where = f"{prefix}record" if not prefix else prefix.rstrip(".")
        if id_template is not None and not isinstance(id_template, str):
            raise self.fail(f"{where}.id", "must be a template such as 'crvs:person:{uin}'", where)
        if type_name is not None and not isinstance(type_name, str):
            raise self.fail(f"{where}.type", "must be a record type name", where)
        if not isinstance(identifiers, list):
            raise self.fail(f"{prefix}identifiers", "must be a list of tables ([[identifiers]])")
        if not isinstance(fields, list):
            raise self.fail(f"{prefix}fields", "must be a list of tables ([[fields]])")
        idents = tuple(
            self.identifier(entity, item, f"{prefix}identifiers", i)
            for i, item in enumerate(identifiers)
        )
        maps = tuple(
            self.field(entity, item, f"{prefix}fields", i, formats) for i, item in enumerate(fields)
        )
        seen: dict[str, str] = {}
        for fm in maps:
            flat = ".".join(s for s, _ in fm.path)
            if flat in seen:
                raise self.fail(
                    f"{fm.name}.to", f"{fm.target!r} is mapped twice ({seen[flat]} and {fm.name})"
                )
            seen[flat] = fm.name
        return Shape(entity, type_name or entity.name, id_template, idents, maps)

    def identifier(self, entity: Entity, item: Any, table: str, index: int) -> IdentifierMap:
        name = f"{table}[{index}]"
        self.check_keys(item, _IDENT_KEYS, name, table, index)
        id_type = item.get("type")
        if not isinstance(id_type, str) or not id_type:
            raise self.fail(f"{name}.type", "give the identifier type (e.g. UIN)", table, index)
        id_type = canonical_id_type(id_type)
        if not entity.has_identifier(id_type):
            known = ", ".join(entity.identifier_types)
            raise self.fail(
                f"{name}.type",
                f"{entity.name} records have no identifier type {id_type!r} (known: {known})",
                table,
                index,
            )
        column, constant = self.column_or_value(item, name, table, index)
        paths = item.get("path")
        if paths is None:
            chosen = entity.identifier_paths
        elif isinstance(paths, str) and paths in entity.identifier_paths:
            chosen = (paths,)
        else:
            raise self.fail(
                f"{name}.path",
                f"use one of {', '.join(entity.identifier_paths)}",
                table,
                index,
            )
        required = item.get("required", True)
        if not isinstance(required, bool):
            raise self.fail(f"{name}.required", "must be true or false", table, index)
        return IdentifierMap(
            name,
            id_type,
            column,
            None if constant is None else str(constant),
            tuple(chosen),
            required,
        )

    def column_or_value(
        self, item: dict[str, Any], name: str, table: str, index: int
    ) -> tuple[str | None, Any]:
        column = item.get("column")
        constant = item.get("value")
        if (column is None) == (constant is None):
            raise self.fail(
                name, "give either column (a source column) or value (a constant)", table, index
            )
        if column is not None and (not isinstance(column, str) or not column):
            raise self.fail(f"{name}.column", "must be a column name", table, index)
        return column, constant

    def field(
        self, entity: Entity, item: Any, table: str, index: int, formats: tuple[str, ...]
    ) -> FieldMap:
        name = f"{table}[{index}]"
        self.check_keys(item, _FIELD_KEYS, name, table, index)
        target = item.get("to")
        if not isinstance(target, str) or not target.strip():
            raise self.fail(f"{name}.to", "give the field of the record (e.g. sex)", table, index)
        column, constant = self.column_or_value(item, name, table, index)
        raw = item.get("raw", False)
        if not isinstance(raw, bool):
            raise self.fail(f"{name}.raw", "must be true or false", table, index)
        segments = [s.strip() for s in target.split(".")]
        if not all(re.fullmatch(r"[A-Za-z_@][\w\-]*(\[\])?", s) for s in segments):
            raise self.fail(f"{name}.to", f"{target!r} is not a field path", table, index)
        plain = ".".join(s.removesuffix("[]") for s in segments)
        attribute = None if raw else entity.attribute(plain)
        if attribute is None and not raw:
            known = ", ".join(a.name for a in entity.attributes if a.stored)
            raise self.fail(
                f"{name}.to",
                f"unknown field path {target!r} of {entity.name} records (known: {known}; "
                "or set raw = true to store an undeclared field as given)",
                table,
                index,
            )
        if attribute is not None and not attribute.stored:
            raise self.fail(
                f"{name}.to",
                f"{attribute.name} is computed from {attribute.source}: map that instead",
                table,
                index,
            )
        if attribute is not None:
            markers = {s.removesuffix("[]"): s.endswith("[]") for s in segments}
            path = tuple((s, markers.get(s, False)) for s in attribute.path.split("."))
        else:
            path = tuple((s.removesuffix("[]"), s.endswith("[]")) for s in segments)
        codes = item.get("codes", {})
        if not isinstance(codes, dict) or not all(isinstance(v, str) for v in codes.values()):
            raise self.fail(f"{name}.codes", "must be a table of source value = code", table, index)
        if attribute is not None and attribute.code_dir is not None:
            directory = codedirs.get(attribute.code_dir)
            for source_value, code in codes.items():
                if directory.normalise(code) is None:
                    raise self.fail(
                        f"{name}.codes.{source_value}",
                        f"{code!r} is not a code of {attribute.code_dir} "
                        f"({', '.join(list(directory.codes)[:12])})",
                        table,
                        index,
                    )
        translations = {str(k): v for k, v in codes.items()}
        translations.update({str(k).casefold(): v for k, v in codes.items()})
        own = (
            self.formats(item["format"], f"{name}.format", table, index) if "format" in item else ()
        )
        required = item.get("required", False)
        if not isinstance(required, bool):
            raise self.fail(f"{name}.required", "must be true or false", table, index)
        split = item.get("split")
        if split is not None and (not isinstance(split, str) or not split):
            raise self.fail(f"{name}.split", "must be a separator such as ';'", table, index)
        fm = FieldMap(
            name,
            target,
            path,
            attribute,
            column,
            constant,
            item.get("default"),
            translations,
            own or formats,
            required,
            split,
        )
        if constant is not None:
            try:
                fm.convert(constant)
            except Reject as exc:
                raise self.fail(f"{name}.value", exc.reason, table, index) from None
        return fm

    def group(self, data: dict[str, Any], child: Entity, formats: tuple[str, ...]) -> Group:
        parent = self.profile.entity(child.parent or "")
        key = data.get("key")
        if not isinstance(key, str) or not key:
            raise self.fail("group.key", "give the column rows are grouped by", "group")
        is_sorted = data.get("sorted", False)
        if not isinstance(is_sorted, bool):
            raise self.fail("group.sorted", "must be true or false", "group")
        shape = self.shape(
            parent,
            data.get("id"),
            data.get("type"),
            data.get("identifiers", []),
            data.get("fields", []),
            formats,
            "group.",
        )
        if not shape.identifiers and shape.id_template is None and parent.key is None:
            raise self.fail(
                "group.identifiers",
                f"give the {parent.name}'s identifier (e.g. column = {key!r}) or group.id",
                "group",
            )
        size = data.get("size")
        size_map = None
        if size is not None:
            if not isinstance(size, str):
                raise self.fail("group.size", "must be a field path (e.g. group_size)", "group")
            size_map = self.field(parent, {"to": size, "value": 1}, "group.size", 0, ())
        assert child.embedded_at is not None
        return Group(key, is_sorted, size_map, shape, child.embedded_at)


def _split(raw: Any, separator: str | None) -> list[Any]:
    if isinstance(raw, str) and separator:
        return [p for p in (s.strip() for s in raw.split(separator)) if p]
    return [raw]
