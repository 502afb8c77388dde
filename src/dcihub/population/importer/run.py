"""Running an import: rows from a source, mapped into records by a mapping, validated, and
written to the store in batches.

Each batch is one transaction: the records whose key identifier (or record key) the store
holds already are compared with what the import would write — equal, they are counted as
unchanged and not written; different, they are replaced — and the rest are inserted
(`RecordStore.replace_many`, which raises every change's events). The transaction also
records how far the import got (`dcihub_meta`), so that `resume` continues after the last
committed batch. With `all_or_nothing` the whole import is one transaction, rolled back when a
row was rejected.

Rows that fail go to the rejects file (CSV or JSON Lines, by its extension) with file, line,
column, field, value and reason. With grouping, the rows of one household become one record
(with its members); a household with a rejected row is rejected whole."""

from __future__ import annotations

import csv
import hashlib
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
from sqlalchemy import Connection, delete, insert, select

from ...standard.profiles.base import identifiers_of
from ...store.database import Store
from .mapping import FieldMap, Group, Mapping, Reject, Shape
from .sources import Source, SourceRow

META_PREFIX = "import:"


@dataclass
class Problem:
    line: int
    field: str
    reason: str
    column: str = ""
    value: Any = None


@dataclass
class Unit:
    """What one batch position holds: one record, from one row or a household's rows."""

    lines: list[int]
    record: dict[str, Any] | None
    problems: list[Problem] = field(default_factory=list)


@dataclass
class Summary:
    rows_read: int = 0
    rows_skipped: int = 0  # before the resumed position
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rows_rejected: int = 0
    records_rejected: int = 0
    batches: int = 0
    committed: bool = True
    resumed_at: int = 0
    rejects_path: Path | None = None

    @property
    def written(self) -> int:
        return self.created + self.updated


Progress = Callable[[Summary, int | None], None]


class ImportError_(RuntimeError):
    """The import stopped; the message is one line."""


def _set_path(record: dict[str, Any], fm: FieldMap, value: Any) -> None:
    node: Any = record
    for i, (segment, listed) in enumerate(fm.path):
        last = i == len(fm.path) - 1
        if last:
            node[segment] = value
            return
        child = node.get(segment)
        if listed:
            if not isinstance(child, list) or not child:
                child = [{}]
                node[segment] = child
            node = child[0]
        else:
            if not isinstance(child, dict):
                child = {}
                node[segment] = child
            node = child


def _value(values: dict[str, Any], column: str) -> Any:
    if column in values:
        return values[column]
    node: Any = values  # a JSON Lines column may be a dotted path into the object
    for part in column.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


class _Template(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        raise KeyError(key)


class Mapper:
    """Turns source rows into records of one shape."""

    def __init__(self, mapping: Mapping) -> None:
        self.mapping = mapping
        self.registry = mapping.registry

    def build(self, shape: Shape, values: dict[str, Any], line: int) -> Unit:
        record: dict[str, Any] = {"@type": shape.type_name}
        problems: list[Problem] = []
        key_value = None
        for ident in shape.identifiers:
            raw = ident.constant if ident.column is None else _value(values, ident.column)
            text = "" if raw is None else str(raw).strip()
            if not text:
                if ident.required:
                    problems.append(
                        Problem(
                            line,
                            ident.id_type,
                            f"the {ident.id_type} identifier is required but empty",
                            ident.column or "",
                        )
                    )
                continue
            if key_value is None:
                key_value = text
            for path in ident.paths:
                _set_identifier(record, path, ident.id_type, text)
        for fm in shape.fields:
            raw = fm.constant if fm.column is None else _value(values, fm.column)
            try:
                converted = fm.convert(raw)
            except Reject as exc:
                problems.append(Problem(line, exc.field, exc.reason, exc.column, exc.value))
                continue
            if converted is not None:
                _set_path(record, fm, converted)
        if problems:
            return Unit([line], None, problems)
        if shape.id_template is not None:
            try:
                key = shape.id_template.format_map(
                    _Template({k: "" if v is None else str(v).strip() for k, v in values.items()})
                )
            except (KeyError, ValueError, IndexError) as exc:
                return Unit([line], None, [Problem(line, "@id", f"record.id template: {exc}")])
            record["@id"] = key
        elif shape.entity.key is None and key_value is not None:
            record["@id"] = f"{self.registry}:{shape.entity.name.lower()}:{key_value}"
        try:
            shape.entity.record_key(record)
        except (ValueError, KeyError, TypeError) as exc:
            return Unit([line], None, [Problem(line, "@id", f"no record key: {exc}")])
        return Unit([line], record)


def _set_identifier(record: dict[str, Any], path: str, id_type: str, value: str) -> None:
    node = record
    parts = path.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    items = node.setdefault(parts[-1], [])
    items.append({"identifier_type": id_type, "identifier_value": value})


# ---------------------------------------------------------------------------------------------
# units: one per record


def row_units(mapper: Mapper, rows: Iterator[SourceRow], summary: Summary) -> Iterator[Unit]:
    shape = mapper.mapping.shape
    for row in rows:
        summary.rows_read += 1
        if row.values is None:
            yield Unit([row.line], None, [Problem(row.line, "", row.problem)])
            continue
        yield mapper.build(shape, row.values, row.line)


@dataclass
class _Member:
    line: int
    record: dict[str, Any] | None
    group: dict[str, Any] | None  # the household's own part, from this row
    problems: list[Problem]


def group_units(
    mapper: Mapper, rows: Iterator[SourceRow], summary: Summary, spill_dir: str | None = None
) -> Iterator[Unit]:
    """Households: rows sharing the group key, in the order of the file when it is sorted by
    the key, else through a temporary on-disk table (memory stays bounded)."""
    group = mapper.mapping.group
    assert group is not None

    def members() -> Iterator[tuple[str, _Member]]:
        for row in rows:
            summary.rows_read += 1
            if row.values is None:
                yield "", _Member(row.line, None, None, [Problem(row.line, "", row.problem)])
                continue
            key = _value(row.values, group.key)
            key = "" if key is None else str(key).strip()
            if not key:
                problem = Problem(
                    row.line, group.key, "the household key is empty", group.key, None
                )
                yield "", _Member(row.line, None, None, [problem])
                continue
            unit = mapper.build(mapper.mapping.shape, row.values, row.line)
            part = mapper.build(group.shape, row.values, row.line)
            yield key, _Member(row.line, unit.record, part.record, [*unit.problems, *part.problems])

    if group.sorted:
        yield from _sorted_groups(mapper, group, members())
    else:
        yield from _spilled_groups(mapper, group, members(), spill_dir)


def _sorted_groups(
    mapper: Mapper, group: Group, members: Iterator[tuple[str, _Member]]
) -> Iterator[Unit]:
    done: set[str] = set()
    current: str | None = None
    batch: list[_Member] = []
    for key, member in members:
        if not key:
            yield Unit([member.line], None, member.problems)
            continue
        if key != current:
            if current is not None:
                done.add(current)
                yield _household(group, current, batch)
            current, batch = key, []
            if key in done:
                problem = Problem(
                    member.line,
                    group.key,
                    f"household {key} appears again after other households: the mapping says "
                    "group.sorted = true, but the file is not sorted by the key",
                    group.key,
                    key,
                )
                member.problems.append(problem)
        batch.append(member)
    if current is not None:
        yield _household(group, current, batch)


def _spilled_groups(
    mapper: Mapper,
    group: Group,
    members: Iterator[tuple[str, _Member]],
    spill_dir: str | None,
) -> Iterator[Unit]:
    with tempfile.TemporaryDirectory(prefix="dcihub-import-", dir=spill_dir) as tmp:
        db = sqlite3.connect(Path(tmp) / "groups.db")
        try:
            db.execute("PRAGMA journal_mode=OFF")
            db.execute("PRAGMA synchronous=OFF")
            db.execute("CREATE TABLE rows (key TEXT, seq INTEGER, payload BLOB)")
            pending: list[tuple[str, int, bytes]] = []
            for seq, (key, member) in enumerate(members):
                if not key:
                    yield Unit([member.line], None, member.problems)
                    continue
                payload = orjson.dumps(
                    [
                        member.line,
                        member.record,
                        member.group,
                        [
                            [p.line, p.field, p.reason, p.column, _plain(p.value)]
                            for p in member.problems
                        ],
                    ]
                )
                pending.append((key, seq, payload))
                if len(pending) >= 5000:
                    db.executemany("INSERT INTO rows VALUES (?, ?, ?)", pending)
                    pending.clear()
            if pending:
                db.executemany("INSERT INTO rows VALUES (?, ?, ?)", pending)
            db.execute("CREATE INDEX ix_rows ON rows (key, seq)")
            current: str | None = None
            batch: list[_Member] = []
            for key, payload in db.execute("SELECT key, payload FROM rows ORDER BY key, seq"):
                line, record, part, problems = orjson.loads(payload)
                member = _Member(line, record, part, [Problem(*p) for p in problems])
                if key != current:
                    if current is not None:
                        yield _household(group, current, batch)
                    current, batch = key, []
                batch.append(member)
            if current is not None:
                yield _household(group, current, batch)
        finally:
            db.close()


def _plain(value: Any) -> Any:
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


def _household(group: Group, key: str, members: list[_Member]) -> Unit:
    lines = [m.line for m in members]
    problems = [p for m in members for p in m.problems]
    first = members[0].group
    if not problems and first is not None:
        for m in members[1:]:
            if m.group != first:
                differs = sorted(
                    k
                    for k in set(first) | set(m.group or {})
                    if first.get(k) != (m.group or {}).get(k)
                )
                problems.append(
                    Problem(
                        m.line,
                        ", ".join(differs),
                        f"household {key}: its fields differ from line {members[0].line}",
                        group.key,
                        key,
                    )
                )
    if problems:
        bad = {p.line for p in problems}
        for m in members:
            if m.line not in bad:
                problems.append(
                    Problem(
                        m.line,
                        "",
                        f"household {key} is rejected: a row of it was (line {min(bad)})",
                        group.key,
                        key,
                    )
                )
        return Unit(lines, None, problems)
    assert first is not None
    record = dict(first)
    children = [m.record for m in members if m.record is not None]
    record[group.embedded_at] = children
    if group.size is not None:
        _set_path(record, group.size, len(children))
    return Unit(lines, record)


# ---------------------------------------------------------------------------------------------
# rejects


class Rejects:
    """The rejects file: CSV or JSON Lines by its extension; written once opened."""

    COLUMNS = ("file", "line", "column", "field", "value", "reason")

    def __init__(self, path: Path, source: str, append: bool) -> None:
        self.path = path
        self.source = source
        self.jsonl = path.suffix.lower() in (".jsonl", ".ndjson", ".json")
        exists = append and path.exists() and path.stat().st_size > 0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file: IO[str] = open(  # noqa: SIM115 - closed by close()
                path, "a" if append else "w", encoding="utf-8", newline=""
            )
        except OSError as exc:
            raise ImportError_(f"cannot write the rejects file {path}: {exc.strerror}") from None
        self.writer = None if self.jsonl else csv.writer(self.file)
        if self.writer is not None and not exists:
            self.writer.writerow(self.COLUMNS)

    def write(self, problem: Problem) -> None:
        value = "" if problem.value is None else _plain(problem.value)
        row = (self.source, problem.line, problem.column, problem.field, value, problem.reason)
        if self.writer is not None:
            self.writer.writerow(row)
        else:
            self.file.write(orjson.dumps(dict(zip(self.COLUMNS, row, strict=True))).decode() + "\n")

    def close(self) -> None:
        self.file.close()


# ---------------------------------------------------------------------------------------------
# the import


@dataclass
class Options:
    batch_size: int = 1000
    resume: bool = False
    all_or_nothing: bool = False
    dry_run: bool = False
    rejects: Path | None = None
    spill_dir: str | None = None


def fingerprint(mapping: Mapping, source: Source) -> str:
    """What identifies an import for `resume`: the registry, the mapping's text and the
    source (path, size and modification time of a file; URL and query of a database)."""
    h = hashlib.sha256()
    h.update(mapping.registry.encode())
    h.update(mapping.path.read_bytes())
    path = getattr(source, "path", None)
    if isinstance(path, Path):
        stat = path.stat()
        h.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    else:
        h.update(f"{source.name}|{getattr(source, 'query', '')}".encode())
    return h.hexdigest()[:32]


def run_import(
    store: Store | None,
    mapping: Mapping,
    source: Source,
    options: Options,
    progress: Progress | None = None,
) -> Summary:
    """Import every row of `source` into the store as `mapping` says (see the module). A dry
    run may be given no store (an empty one): every record then counts as created."""
    summary = Summary()
    meta_key = f"{META_PREFIX}{mapping.registry}:{fingerprint(mapping, source)}"
    start = 0
    if options.resume and store is not None:
        saved = store.get_meta(meta_key)
        if saved is not None:
            start = int(orjson.loads(saved)["units"])
    summary.resumed_at = start
    mapper = Mapper(mapping)
    rows = source.rows()
    if mapping.group is not None:
        units: Iterator[Unit] = group_units(mapper, rows, summary, options.spill_dir)
        skip = start  # households are found only after reading every row: skip the done ones
    else:
        units = row_units(mapper, _skip_rows(rows, start, summary), summary)
        skip = 0  # one unit per row: the rows before `start` are not even mapped
    rejects = (
        Rejects(options.rejects, source.name, append=options.resume and start > 0)
        if options.rejects is not None
        else None
    )
    summary.rejects_path = options.rejects
    writer = _Writer(store, mapping, options, summary, meta_key)
    done = start
    try:
        for unit in units:
            if skip:
                skip -= 1
                summary.rows_skipped += len(unit.lines)
                continue
            done += 1
            if unit.record is None:
                summary.records_rejected += 1
                summary.rows_rejected += len({p.line for p in unit.problems} | set(unit.lines))
                if rejects is not None:
                    for problem in unit.problems:
                        rejects.write(problem)
                writer.position = done
            elif writer.add(unit.record, done) and progress is not None:
                progress(summary, source.position())  # after each committed batch
                continue
            if progress is not None and done % 500 == 0:
                progress(summary, source.position())
        writer.finish(done)
        if progress is not None:
            progress(summary, source.position())
    finally:
        writer.close()
        if rejects is not None:
            rejects.close()
    return summary


def _skip_rows(rows: Iterator[SourceRow], count: int, summary: Summary) -> Iterator[SourceRow]:
    for index, row in enumerate(rows):
        if index < count:
            summary.rows_skipped += 1
            continue
        yield row


class _Writer:
    """Batches of records, compared with the store and written in one transaction each."""

    def __init__(
        self,
        store: Store | None,
        mapping: Mapping,
        options: Options,
        summary: Summary,
        meta_key: str,
    ) -> None:
        assert store is not None or options.dry_run, "only a dry run goes without a store"
        self.store = store
        self.mapping = mapping
        self.options = options
        self.summary = summary
        self.meta_key = meta_key
        self.registry = mapping.registry
        self.entity = mapping.top
        self.key_id = mapping.key_identifier
        self.pending: list[dict[str, Any]] = []
        self.keys: set[str] = set()
        self.position = 0
        self.conn: Connection | None = None
        self._outer: Any = None
        if options.all_or_nothing and store is not None and not options.dry_run:
            self._outer = store.engine.connect()
            self.conn = self._outer
            self._txn = self._outer.begin()
        # Batches are written by one thread while the next one is mapped (the database's work,
        # and the driver's, overlap Python's); at most one batch is in flight, in order.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dcihub-import")
        self._inflight: Future[None] | None = None

    def add(self, record: dict[str, Any], position: int) -> bool:
        """Stage one record; True when a batch was written with it."""
        key = self.entity.record_key(record)
        if key in self.keys:
            self.flush()  # the second row of one record is compared with the first, written
        self.pending.append(record)
        self.keys.add(key)
        self.position = position
        if len(self.pending) >= self.options.batch_size:
            self.flush()
            return True
        return False

    def finish(self, position: int) -> None:
        self.position = position
        self.flush()
        self._wait()
        if self._outer is not None:
            if self.summary.records_rejected:
                self._txn.rollback()
                self.summary.committed = False
            else:
                self._txn.commit()
        elif self.store is not None and not self.options.dry_run:
            with self.store.begin() as conn:  # the import is complete: nothing to resume
                conn.execute(delete(self._meta).where(self._meta.c.key == self.meta_key))

    def _wait(self) -> None:
        """Wait for the batch in flight; its error, if it failed, is raised here."""
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            inflight.result()

    def close(self) -> None:
        try:
            self._wait()  # an interrupted import still ends its batch in flight cleanly
        except Exception:  # noqa: BLE001, S110 - already failing: the first error is the one shown
            pass
        self._pool.shutdown(wait=True)
        if self._outer is not None:
            if self._txn.is_active:
                self._txn.rollback()
                self.summary.committed = False
            self._outer.close()

    @property
    def _meta(self) -> Any:
        assert self.store is not None
        return self.store.schema.ops.meta

    def flush(self) -> None:
        records, self.pending, self.keys = self.pending, [], set()
        if not records:
            return
        self._wait()
        self._inflight = self._pool.submit(self._flush, records, self.position)

    def _flush(self, records: list[dict[str, Any]], position: int) -> None:
        if self.conn is not None:
            self._write(self.conn, records)
            return
        if self.store is None:
            self.summary.created += len(records)  # a dry run on an empty store
            return
        if self.options.dry_run:
            with self.store.read() as conn:
                self._write(conn, records)
            return
        with self.store.begin() as conn:
            self._write(conn, records)
            conn.execute(delete(self._meta).where(self._meta.c.key == self.meta_key))
            conn.execute(
                insert(self._meta),
                {"key": self.meta_key, "value": orjson.dumps({"units": position}).decode()},
            )
        self.summary.batches += 1

    def _write(self, conn: Connection, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        existing = self._existing(conn, records)
        write: list[dict[str, Any]] = []
        replacing: list[tuple[int, dict[str, Any]] | None] = []
        for record in records:
            found = existing.get(id(record))
            if found is None:
                self.summary.created += 1
                write.append(record)
                replacing.append(None)
                continue
            pk, key, before = found
            if "@id" in record and self.entity.key is None:
                record["@id"] = key  # the stored record keeps its key
            if before == record:
                self.summary.unchanged += 1
                continue
            self.summary.updated += 1
            write.append(record)
            replacing.append((pk, before))
        if write and self.store is not None and not self.options.dry_run:
            self.store.records.replace_many(conn, self.registry, write, replacing)

    def _existing(
        self, conn: Connection, records: list[dict[str, Any]]
    ) -> dict[int, tuple[int, str, dict[str, Any]]]:
        """The stored record each new one replaces: found by its key identifier, else by its
        record key. id(record) -> (pk, record key, stored record)."""
        assert self.store is not None
        main = self.store.records.tables(self.registry, self.entity.name).main
        ids = self.store.records.tables(self.registry, self.entity.name).ids
        out: dict[int, tuple[int, str, dict[str, Any]]] = {}
        by_value: dict[str, list[dict[str, Any]]] = {}
        if self.key_id is not None:
            for record in records:
                for id_type, value in identifiers_of(record, self.entity.identifier_paths):
                    if id_type == self.key_id.id_type:
                        by_value.setdefault(value, []).append(record)
                        break
            values = list(by_value)
            for start in range(0, len(values), 900):
                chunk = values[start : start + 900]
                query = (
                    select(ids.c.id_value, main.c.pk, main.c.record_key, main.c.record)
                    .join(main, main.c.pk == ids.c.pk)
                    .where(ids.c.id_type == self.key_id.id_type, ids.c.id_value.in_(chunk))
                    .order_by(main.c.pk)
                )
                for value, pk, key, text in conn.execute(query):
                    for record in by_value.get(value, []):
                        out.setdefault(id(record), (pk, key, orjson.loads(text)))
        rest = {self.entity.record_key(r): r for r in records if id(r) not in out}
        keys = list(rest)
        for start in range(0, len(keys), 900):
            chunk = keys[start : start + 900]
            for pk, key, text in conn.execute(
                select(main.c.pk, main.c.record_key, main.c.record).where(
                    main.c.record_key.in_(chunk)
                )
            ):
                out[id(rest[key])] = (pk, key, orjson.loads(text))
        return out
