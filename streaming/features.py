"""Online item features updated from the event stream: interaction counts per kind and recency.

Idempotent on event id (the ids applied are stored in the same SQLite transaction as the counts),
so a redelivered batch changes nothing; counts do not depend on arrival order. Several worker
processes may share one file (SQLite serialises the writers).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from streaming.events import USER_EVENT_KINDS, UserEvent
from streaming.handlers import HandleResult, Handler

__all__ = ["OnlineFeatureStore", "FeatureHandler"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (event_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS item_counts (
    item_id INTEGER NOT NULL, kind TEXT NOT NULL, n INTEGER NOT NULL, last_ts REAL NOT NULL,
    PRIMARY KEY (item_id, kind)
) WITHOUT ROWID;
"""
_IN_CHUNK = 900  # below SQLite's bound-parameter limit


class OnlineFeatureStore:
    """Per-item counters (views, clicks, add-to-carts, purchases, ratings) and last event time."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = None if path is None else Path(path)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(":memory:" if self.path is None else str(self.path), timeout=30.0,
                                     check_same_thread=False, isolation_level=None)
        if self.path is not None:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)

    def apply(self, events: Sequence[UserEvent]) -> tuple[int, int]:
        """Count the events not applied before; returns (applied, duplicates)."""
        batch = {e.event_id: e for e in events}
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                ids = list(batch)
                seen: set[str] = set()
                for start in range(0, len(ids), _IN_CHUNK):
                    chunk = ids[start:start + _IN_CHUNK]
                    rows = self._conn.execute(f"SELECT event_id FROM seen WHERE event_id IN ({','.join('?' * len(chunk))})", chunk)
                    seen.update(r[0] for r in rows)
                new = [e for eid, e in batch.items() if eid not in seen]
                totals: dict[tuple[int, str], list] = defaultdict(lambda: [0, float("-inf")])
                for e in new:
                    agg = totals[(e.item_id, e.kind)]
                    agg[0] += 1
                    agg[1] = max(agg[1], e.timestamp)
                self._conn.executemany("INSERT INTO seen(event_id) VALUES (?)", [(e.event_id,) for e in new])
                self._conn.executemany(
                    "INSERT INTO item_counts(item_id, kind, n, last_ts) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(item_id, kind) DO UPDATE SET n = n + excluded.n, last_ts = max(last_ts, excluded.last_ts)",
                    [(item, kind, n, ts) for (item, kind), (n, ts) in totals.items()],
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        return len(new), len(events) - len(new)

    def item(self, item_id: int) -> dict[str, float]:
        """``{kind: count for every kind, "last_ts": latest event time or None}`` of one item."""
        with self._lock:
            rows = self._conn.execute("SELECT kind, n, last_ts FROM item_counts WHERE item_id = ?", (int(item_id),)).fetchall()
        out: dict = {kind: 0 for kind in USER_EVENT_KINDS}
        out.update({kind: n for kind, n, _ in rows})
        out["last_ts"] = max((ts for *_, ts in rows), default=None)
        return out

    def top_items(self, kind: str, k: int = 10) -> list[tuple[int, int]]:
        """The ``k`` items with most events of ``kind``, as (item_id, count), most first."""
        if kind not in USER_EVENT_KINDS:
            raise ValueError(f"kind={kind!r} is not one of {USER_EVENT_KINDS}")
        with self._lock:
            rows = self._conn.execute(
                "SELECT item_id, n FROM item_counts WHERE kind = ? ORDER BY n DESC, item_id LIMIT ?", (kind, int(k))
            ).fetchall()
        return [(int(i), int(n)) for i, n in rows]

    def flush(self) -> None:
        """Checkpoint the WAL into the database file (each apply() is already committed)."""
        if self.path is not None:
            with self._lock:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class FeatureHandler(Handler):
    """User events -> ``OnlineFeatureStore`` counters."""

    accepts = (UserEvent,)

    def __init__(self, store: OnlineFeatureStore) -> None:
        self.store = store

    def handle(self, events: Sequence[UserEvent]) -> HandleResult:
        self.store.apply(events)
        return HandleResult()  # counted by ProfileHandler; here only the side effect matters

    def flush(self) -> None:
        self.store.flush()
