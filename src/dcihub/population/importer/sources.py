"""Where the rows of an import come from: a CSV file (delimiter, quoting and encoding as the
mapping declares), a JSON Lines file, or a query against another database (any SQLAlchemy
URL, streamed with a server-side cursor). Each yields `SourceRow`s: the line (or row number)
and the row as a dict, or the reason the row cannot be read."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .mapping import Mapping, MappingError


class SourceError(ValueError):
    """The source cannot be read at all (missing file, wrong encoding, database error)."""


@dataclass
class SourceRow:
    line: int
    values: dict[str, Any] | None  # None: the row cannot be read (see `problem`)
    problem: str = ""


class Source:
    """A source of rows; `position()`/`size` give the progress in bytes when known."""

    name: str
    size: int | None = None

    def rows(self) -> Iterator[SourceRow]:  # pragma: no cover - interface
        raise NotImplementedError

    def position(self) -> int | None:
        return None


def open_source(mapping: Mapping, location: str | None, query: str | None) -> Source:
    """The source of `mapping`: `location` is a file path or a database URL (or None when the
    mapping names the database); `query` overrides the mapping's SQL query."""
    src = mapping.source
    url = location if location is not None and "://" in location else src.url
    fmt = src.format
    if fmt is None:
        if url is not None or query is not None:
            fmt = "sql"
        elif location is not None and location.lower().endswith((".jsonl", ".ndjson")):
            fmt = "jsonl"
        else:
            fmt = "csv"
    if fmt == "sql":
        if url is None:
            raise SourceError(
                "a SQL source needs a database URL: give it as SOURCE or as source.url"
            )
        sql = query or src.query
        if not sql:
            raise SourceError("a SQL source needs a query: give --query or source.query")
        return SqlSource(url, sql, mapping)
    if location is None:
        raise SourceError("give the file to import")
    path = Path(location)
    if not path.is_file():
        raise SourceError(f"no file {path}")
    if fmt == "jsonl":
        return JsonLinesSource(path, mapping)
    return CsvSource(path, mapping)


class _FileSource(Source):
    def __init__(self, path: Path, mapping: Mapping) -> None:
        self.path = path
        self.name = str(path)
        self.mapping = mapping
        self.size = path.stat().st_size
        self._raw: io.BufferedReader | None = None

    def position(self) -> int | None:
        raw = self._raw
        if raw is None or raw.closed:
            return None
        return raw.tell()

    def _text(self) -> io.TextIOWrapper:
        self._raw = open(self.path, "rb")  # noqa: SIM115 - closed by the reader
        encoding = self.mapping.source.encoding
        if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
            encoding = "utf-8-sig"  # a byte order mark is not part of the first column's name
        return io.TextIOWrapper(self._raw, encoding=encoding, newline="")


class CsvSource(_FileSource):
    def rows(self) -> Iterator[SourceRow]:
        src = self.mapping.source
        text = self._text()
        try:
            reader = csv.reader(text, delimiter=src.delimiter, quotechar=src.quotechar)
            try:
                if src.header:
                    header = next(reader, None)
                    if header is None:
                        return
                    header = [h.strip() for h in header]
                else:
                    header = list(src.columns)
                missing = sorted(self.mapping.columns() - set(header))
                if missing:
                    raise MappingError(
                        f"{self.mapping.path}: the mapping reads column(s) "
                        f"{', '.join(repr(m) for m in missing)}, which {self.name} does not "
                        f"have (its columns: {', '.join(header)})"
                    )
                width = len(header)
                last = reader.line_num
                for values in reader:
                    line = last + 1
                    last = reader.line_num
                    if not values or (len(values) == 1 and not values[0].strip()):
                        continue  # blank line
                    if len(values) != width:
                        yield SourceRow(
                            line,
                            None,
                            f"the row has {len(values)} values, the header {width} columns",
                        )
                        continue
                    yield SourceRow(line, dict(zip(header, values, strict=True)))
            except UnicodeDecodeError as exc:
                raise SourceError(
                    f"{self.name} near line {reader.line_num + 1}: cannot be read as "
                    f"{src.encoding} ({exc.reason}); set source.encoding in the mapping"
                ) from None
            except csv.Error as exc:
                raise SourceError(f"{self.name} line {reader.line_num}: {exc}") from None
        finally:
            text.close()


class JsonLinesSource(_FileSource):
    def rows(self) -> Iterator[SourceRow]:
        text = self._text()
        number = 0
        try:
            for number, line in enumerate(text, 1):  # noqa: B007 - read after the loop
                if not line.strip():
                    continue
                try:
                    value = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    yield SourceRow(number, None, f"not JSON: {exc}")
                    continue
                if not isinstance(value, dict):
                    yield SourceRow(number, None, "the line is not a JSON object")
                    continue
                yield SourceRow(number, value)
        except UnicodeDecodeError as exc:
            raise SourceError(
                f"{self.name} near line {number + 1}: cannot be read as "
                f"{self.mapping.source.encoding} ({exc.reason}); set source.encoding"
            ) from None
        finally:
            text.close()


class SqlSource(Source):
    def __init__(self, url: str, query: str, mapping: Mapping) -> None:
        from sqlalchemy.engine import make_url

        try:
            parsed = make_url(url)
        except Exception as exc:  # noqa: BLE001 - sqlalchemy raises ArgumentError and others
            raise SourceError(f"{url!r} is not a database URL: {exc}") from None
        self.url = url
        self.name = parsed.render_as_string(hide_password=True)
        self.query = query
        self.mapping = mapping

    def rows(self) -> Iterator[SourceRow]:
        from sqlalchemy import create_engine, text
        from sqlalchemy.exc import SQLAlchemyError

        try:
            engine = create_engine(self.url)
        except Exception as exc:  # noqa: BLE001 - unknown dialect, missing driver ...
            raise SourceError(f"cannot use the database {self.name}: {_first(exc)}") from None
        try:
            with engine.connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=2000).execute(
                    text(self.query)
                )
                columns = list(result.keys())
                missing = sorted(self.mapping.columns() - set(columns))
                if missing:
                    raise MappingError(
                        f"{self.mapping.path}: the mapping reads column(s) "
                        f"{', '.join(repr(m) for m in missing)}, which the query does not "
                        f"return (it returns: {', '.join(columns)})"
                    )
                for number, row in enumerate(result, 1):
                    yield SourceRow(number, dict(zip(columns, row, strict=True)))
        except SQLAlchemyError as exc:
            raise SourceError(f"the query on {self.name} failed: {_first(exc)}") from None
        finally:
            engine.dispose()


def _first(exc: BaseException) -> str:
    origin = getattr(exc, "orig", None) or exc
    lines = str(origin).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
