"""Counting a dump's rows per table while it streams to the repository, for the restore
drills (``workflows/row_digests.py`` says how): the dump step and the parallel dump tap
the client's output with it before compression, at no cost to the source server."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from workflows.row_digests import RowDigester, digest_text
from workflows.snapshots import Stream, TableRows


@dataclass
class RowCounter:
    """Taps one dump stream; ``recorded(stream)`` puts its counts in the manifest entry."""

    digester: RowDigester

    @classmethod
    def of(cls, databases: Sequence[str]) -> RowCounter:
        """For a dump of ``databases`` (one: its dump says no ``USE``, name it here)."""
        return cls(RowDigester(databases[0] if len(databases) == 1 else ""))

    def tap(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        return self.digester.tap(chunks)

    def recorded(self, stream: Stream) -> Stream:
        rows = tuple(TableRows(table=table, rows=count.rows, digest=digest_text(count.digest))
                     for table, count in sorted(self.digester.finish().items()))
        return stream.model_copy(update={"table_rows": rows})
