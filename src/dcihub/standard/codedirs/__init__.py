"""DCI code directories (DIGEST §5.1): the code lists of the spdci/schemas JSON-LD files.

Pure Python, no I/O: the data lives in `generated.py`, written by `tools/gen_codedirs.py` from
`schemas/core/v1/code` and `schemas/extensions/*/v1/code` (the defects of those files and how
they are resolved are documented in the generator).

    >>> from dcihub.standard import codedirs
    >>> ms = codedirs.get("marital_status")
    >>> ms.label("W"), ms.normalise("widow"), "W" in ms
    ('Widow', 'W', True)

Wire codes are the local part of the JSON-LD ids (`category:W` -> `W`) and are always strings,
also the numeric ones (`"1"`, `"0321"`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from dcihub.standard.codedirs.generated import DIRECTORIES as _DATA

__all__ = ["CodeDirectory", "all_directories", "get"]

_LABEL_NOISE = re.compile(r"[\s_\-]+")


def _label_key(text: str) -> str:
    """Case-, whitespace-, underscore- and hyphen-insensitive form of a label."""
    return _LABEL_NOISE.sub("", text).casefold()


@dataclass(frozen=True)
class CodeDirectory:
    """One code directory: wire code -> label, in the order of the source file."""

    name: str  # snake_case key, e.g. "marital_status"
    title: str  # rdfs:label of the class
    registry: str  # "core", "crvs", "dr", "fr", "ibr", "ess", "id", "social"
    source: str  # path relative to schemas/, e.g. "core/v1/code/MaritalStatusEnum.jsonld"
    codes: Mapping[str, str]  # wire code -> label, in order
    # Extra labels accepted by `normalise` (label -> wire code), e.g. a second label the source
    # file gave to a duplicated code, or the source's spelling of a corrected label.
    aliases: Mapping[str, str] = field(default_factory=dict)
    _by_casefold: Mapping[str, str] = field(init=False, repr=False, compare=False)
    _by_label: Mapping[str, str] = field(init=False, repr=False, compare=False)
    _by_number: Mapping[int, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        codes = dict(self.codes)
        aliases = dict(self.aliases)
        unknown = sorted(set(aliases.values()) - set(codes))
        if unknown:
            raise ValueError(f"{self.name}: aliases refer to unknown codes {unknown}")
        by_casefold: dict[str, str] = {}
        by_number: dict[int, str] = {}
        by_label: dict[str, str] = {}
        for code, label in codes.items():
            by_casefold.setdefault(code.casefold(), code)
            if code.isascii() and code.isdigit():
                by_number.setdefault(int(code), code)
            by_label.setdefault(_label_key(label), code)
        for label, code in aliases.items():
            by_label.setdefault(_label_key(label), code)
        set_ = object.__setattr__
        set_(self, "codes", MappingProxyType(codes))
        set_(self, "aliases", MappingProxyType(aliases))
        set_(self, "_by_casefold", MappingProxyType(by_casefold))
        set_(self, "_by_label", MappingProxyType(by_label))
        set_(self, "_by_number", MappingProxyType(by_number))

    def __hash__(self) -> int:
        return hash((self.name, self.source, tuple(self.codes.items())))

    def __contains__(self, code: object) -> bool:
        """True if `code` is exactly one of the wire codes (see `normalise` for lenient input)."""
        return isinstance(code, str) and code in self.codes

    def label(self, code: object) -> str | None:
        """The label of a wire code, or None. Exact codes only: use `label(normalise(x))`."""
        return self.codes.get(code) if isinstance(code, str) else None

    def normalise(self, value: object) -> str | None:
        """The wire code meant by `value`, or None if it cannot be recognised.

        Accepted, in this order: the code itself (exact, then case-insensitive); a label or an
        extra accepted label (case-, whitespace-, underscore- and hyphen-insensitive); an int equal
        to a numeric code (`1` -> `"1"`, `321` -> `"0321"`); finally a namespaced code such as
        `"category:W"` is tried by its local part. Surrounding whitespace is ignored; booleans
        and other types are never codes.
        """
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return self._by_number.get(value)
        if not isinstance(value, str):
            return None
        text = value.strip()
        if not text:
            return None
        if text in self.codes:
            return text
        found = self._by_casefold.get(text.casefold()) or self._by_label.get(_label_key(text))
        if found is None and ":" in text:
            local = text.rsplit(":", 1)[1]
            if local:
                found = self.normalise(local)
        return found


def _build() -> Mapping[str, CodeDirectory]:
    directories: dict[str, CodeDirectory] = {}
    for entry in sorted(_DATA, key=lambda item: item["name"]):
        directory = CodeDirectory(
            name=entry["name"],
            title=entry["title"],
            registry=entry["registry"],
            source=entry["source"],
            codes=dict(entry["codes"]),
            aliases=dict(entry["aliases"]),
        )
        if directory.name in directories:
            raise ValueError(f"duplicate code directory name {directory.name!r}")
        directories[directory.name] = directory
    return MappingProxyType(directories)


_DIRECTORIES = _build()


def get(name: str) -> CodeDirectory:
    """The code directory called `name`; KeyError listing the known names otherwise."""
    try:
        return _DIRECTORIES[name]
    except (KeyError, TypeError):
        known = ", ".join(_DIRECTORIES)
        raise KeyError(f"unknown code directory {name!r}; known directories: {known}") from None


def all_directories() -> Mapping[str, CodeDirectory]:
    """All code directories by name, sorted by name (read-only)."""
    return _DIRECTORIES
