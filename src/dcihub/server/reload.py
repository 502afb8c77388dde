"""Picking up operator changes while a node runs: the partner file (`dcihub partners …`) and the
key directory (`dcihub keys rotate`) are re-read when they change, within a few seconds."""

from __future__ import annotations

import logging
from pathlib import Path

import anyio

from ..security.partners import PartnerRegistry
from .guard import Security

log = logging.getLogger("dcihub.reload")


def _stamp(path: Path) -> tuple[float, int] | None:
    try:
        if path.is_dir():
            entries = list(path.iterdir())
            latest = max([path.stat().st_mtime] + [e.stat().st_mtime for e in entries])
            return latest, len(entries)
        stat = path.stat()
        return stat.st_mtime, stat.st_size
    except OSError:
        return None


class Reloader:
    def __init__(self, security: Security) -> None:
        self.security = security
        options = security.options
        self.partners_path = options.path(options.partners_file)
        self.key_dir = options.path(options.key_dir)
        self._partners = _stamp(self.partners_path)
        self._keys = _stamp(self.key_dir)

    def check(self) -> list[str]:
        """Reload what changed since the last check; returns what was reloaded."""
        done = []
        stamp = _stamp(self.partners_path)
        if stamp != self._partners:
            self._partners = stamp
            try:
                registry = (
                    PartnerRegistry.load(self.partners_path)
                    if self.partners_path.exists()
                    else PartnerRegistry()
                )
            except Exception as exc:  # keep serving with the partners we have
                log.error("partner file %s not reloaded: %s", self.partners_path, exc)
            else:
                self.security.partners = registry
                done.append("partners")
        stamp = _stamp(self.key_dir)
        if stamp != self._keys:
            self._keys = stamp
            try:
                self.security.keys.reload()
            except Exception as exc:
                log.error("keys in %s not reloaded: %s", self.key_dir, exc)
            else:
                done.append("keys")
        return done

    async def run(self, every: float = 3.0) -> None:
        while True:
            await anyio.sleep(every)
            reloaded = await anyio.to_thread.run_sync(self.check)
            for what in reloaded:
                log.warning("reloaded %s", what)
