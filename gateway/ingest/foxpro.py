"""The FoxPro source adapter: one fixed ``.dbf`` table, or a glob of drops read oldest first,
each read by ``gateway.ingest.dbf.read_dbf``. Exports ``FoxProAdapter``."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from pathlib import Path

from gateway.errors import SourceError
from gateway.ingest.base import Export, failed_export
from gateway.ingest.dbf import read_dbf
from gateway.ingest.dbf_header import DEFAULT_ENCODING

__all__ = ["FoxProAdapter"]

_GLOB_CHARS = frozenset("*?[")


class FoxProAdapter:
    """A FoxPro source: one fixed table, or a glob of drops read oldest first."""

    def __init__(
        self, name: str, path_or_glob: str | Path, encoding: str = DEFAULT_ENCODING
    ) -> None:
        self.name = name
        self.path_or_glob = str(path_or_glob)
        self.encoding = encoding

    def _paths(self) -> list[Path]:
        if not _GLOB_CHARS & set(self.path_or_glob):
            return [Path(self.path_or_glob)]
        found = [
            Path(p)
            for p in glob.glob(self.path_or_glob)
            if p.lower().endswith(".dbf") and os.path.isfile(p)
        ]

        def mtime(p: Path) -> float:
            try:
                return p.stat().st_mtime
            except OSError:
                return 0.0

        return sorted(found, key=lambda p: (mtime(p), str(p)))

    def exports(self) -> Iterator[Export]:
        for p in self._paths():
            try:
                export = read_dbf(p, encoding=self.encoding)
            except SourceError as exc:  # this file's run fails; the next files are read
                export = failed_export(str(p), exc)
            yield export

    def done(self, export: Export) -> None:
        """Nothing to do: a fixed table is re-read each run, its fingerprint skips repeats."""
        return None
