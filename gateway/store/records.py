"""A source's record memory: which bytes each record of its last applied export held, so that a
re-ingest does not decode and validate again the records that did not change.

A nightly FoxPro export is rewritten whole, but from one night to the next most of its records
hold the very same bytes. Decoding and validating them is most of a re-ingest's time (a
million-row table: 54 us a row of CPU in the reading processes). ``source_records`` keeps, per
source and record number, a 16-byte hash of the record's bytes (its memo blocks included) and
the order id it gave. A reading process that finds the same hash at the same record number
sends only (row, hash) (``RawRow.known``); the run stages such a row from the memory and
``source_state`` (``resolve_known``): its order id and the digest of the values the source
holds for it now, so the diff sees it unchanged, as decoding it would have.

That holds only while the memory describes what ``source_state`` holds, so:

* the memory belongs to one *context* (``context``: the reader's record layout, the mapping's
  digest, the driver list, this code's ``VERSION`` and the package's version) kept in ``meta``;
  a run under another context reads every record and replaces the memory;
* an applied full run (``remember``) writes the hashes of the rows it decoded and drops the
  entries of records it did not stage (quarantined, deleted, gone); every other run that
  changes ``source_state`` (a quarantine re-try, a run without a memory context) forgets the
  source's memory (``forget``) in the same transaction;
* ``resolve_known`` checks, inside the run's write transaction, that the context is still the
  run's and that every known row still resolves; otherwise it raises ``StaleMemory`` and the
  pipeline reads the export again without the memory (a concurrent run of the same source).

This module is imported by the reading processes (``expected``): it needs only ``sqlite3``.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from gateway.errors import GatewayError

__all__ = ["HASH_BYTES", "VERSION", "StaleMemory", "context", "expected", "forget",
           "remember", "resolve_known", "stored_context"]

VERSION = 1
"""Bump when a change alters what a record's bytes validate to (a decoder, a validation rule):
every source's memory is then read again once."""
HASH_BYTES = 16
_META = "records:"


class StaleMemory(GatewayError):
    """The memory a run read its known rows against changed before the run committed."""


def context(layout: str, mapping_digest: str, drivers: Iterable[str] | None,
            version: str) -> str:
    """The digest of everything that decides what a record's bytes validate to."""
    spec = [VERSION, version, layout, mapping_digest,
            None if drivers is None else sorted(drivers)]
    return hashlib.sha256(json.dumps(spec).encode()).hexdigest()


def stored_context(conn: sqlite3.Connection, source: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key=?", (_META + source,)).fetchone()
    return None if row is None else str(row[0])


def expected(db: Path, source: str, first: int, last: int) -> bytearray:
    """The remembered hashes of records ``first``..``last``, ``HASH_BYTES`` each by record
    number (zeros where none is remembered): 16 MB for a million records, where a dict of them
    took some 70 MB in each reading process."""
    buf = bytearray(HASH_BYTES * max(0, last - first + 1))
    try:
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            for row, digest in conn.execute(
                    "SELECT row, rawhash FROM source_records WHERE source=? "
                    "AND row BETWEEN ? AND ?", (source, first, last)):
                if isinstance(digest, bytes) and len(digest) == HASH_BYTES:
                    at = (row - first) * HASH_BYTES
                    buf[at : at + HASH_BYTES] = digest
        finally:
            conn.close()
    except sqlite3.Error:  # a memory that cannot be read costs time, not the run
        return bytearray(len(buf))
    return buf


def resolve_known(conn: sqlite3.Connection, source: str, run_context: str | None) -> int:
    """Stage the run's known rows (``temp.known``) as the memory and ``source_state`` say they
    are: values NULL (unchanged, never read), the digest the source holds now. Raises
    ``StaleMemory`` unless every one resolves under the run's context. Returns how many."""
    count = int(conn.execute("SELECT count(*) FROM temp.known").fetchone()[0])
    if not count:
        return 0
    if run_context is None or stored_context(conn, source) != run_context:
        raise StaleMemory(f"source {source!r}: its record memory changed during the run")
    staged = conn.execute(
        "INSERT INTO temp.staged(row, order_id, digest, vals, record, nfields, rawhash) "
        "SELECT k.row, m.order_id, st.digest, NULL, '', 0, k.rawhash FROM temp.known k "
        "JOIN source_records m ON m.source=? AND m.row=k.row AND m.rawhash=k.rawhash "
        "JOIN source_state st ON st.source=? AND st.order_id=m.order_id",
        (source, source),
    ).rowcount
    if staged != count:
        raise StaleMemory(f"source {source!r}: {count - staged} of {count} unchanged records "
                          "no longer match its record memory")
    return count


def remember(conn: sqlite3.Connection, source: str, run_context: str) -> None:
    """After an applied full run: the memory is this run's staged rows (those with a hash)."""
    if stored_context(conn, source) != run_context:
        forget(conn, source)
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES(?,?)",
                     (_META + source, run_context))
    conn.execute(
        "INSERT OR REPLACE INTO source_records(source, row, rawhash, order_id) "
        "SELECT ?, row, rawhash, order_id FROM temp.staged "
        "WHERE rawhash IS NOT NULL AND vals IS NOT NULL ORDER BY row",
        (source,),
    )
    kept = int(conn.execute("SELECT count(*) FROM source_records WHERE source=?",
                            (source,)).fetchone()[0])
    staged = int(conn.execute("SELECT count(*) FROM temp.staged WHERE rawhash IS NOT NULL")
                 .fetchone()[0])
    if kept != staged:  # records not staged this time (quarantined, deleted, gone)
        conn.execute(
            "DELETE FROM source_records WHERE source=? AND row NOT IN "
            "(SELECT row FROM temp.staged WHERE rawhash IS NOT NULL)",
            (source,),
        )


def forget(conn: sqlite3.Connection, source: str) -> None:
    conn.execute("DELETE FROM source_records WHERE source=?", (source,))
    conn.execute("DELETE FROM meta WHERE key=?", (_META + source,))
