"""Importers for a country's own data (`dcihub import`): CSV, JSON Lines or a SQL query,
mapped into a registry's records by a TOML mapping file (docs/import.md)."""

from .mapping import Mapping, MappingError, load_mapping
from .run import ImportError_, Options, Summary, run_import
from .sources import SourceError, open_source

__all__ = [
    "ImportError_",
    "Mapping",
    "MappingError",
    "Options",
    "SourceError",
    "Summary",
    "load_mapping",
    "open_source",
    "run_import",
]
