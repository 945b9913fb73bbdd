"""Where workers read events from: the ``EventSource`` base and its Kafka consumer-group version.

A source hands out ``Delivery`` records (decoded event, or the decoding error for the dead-letter
topic) and commits only what the worker says it has made durable: at-least-once delivery.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Sequence

from streaming.events import Event, EventSchemaError, decode_event

__all__ = ["Delivery", "EventSource", "KafkaEventSource", "MemoryEventSource", "consumer_settings"]


def consumer_settings() -> dict:
    """Client settings every consumer here uses (Tansu's JoinGroup waits ~session_timeout/2)."""
    return {"session_timeout_ms": 6000, "heartbeat_interval_ms": 2000}


@dataclass(frozen=True)
class Delivery:
    """One consumed message: ``event`` when it decoded, else ``error`` (the dead-letter reason)."""

    topic: str
    partition: int
    offset: int
    raw: bytes | None
    event: Event | None
    error: str | None
    received_at: float


class EventSource(ABC):
    """A partitioned, committable stream of events."""

    @abstractmethod
    def poll(self, timeout_s: float, max_records: int) -> list[Delivery]:
        """Up to ``max_records`` deliveries, waiting at most ``timeout_s`` for the first."""

    @abstractmethod
    def commit(self, wait: bool = True) -> None:
        """Mark every delivery returned so far as done (call after making its effects durable).
        ``wait=False`` sends the commit without waiting for the broker's answer."""

    @abstractmethod
    def lag(self) -> dict[tuple[str, int], int | None]:
        """Messages not yet delivered, per (topic, partition) assigned here (high-water - position);
        None where the high-water mark is not known yet (before the first fetch)."""

    @abstractmethod
    def close(self) -> None:
        """Leave the group without committing (uncommitted deliveries are redelivered elsewhere)."""


class KafkaEventSource(EventSource):
    """A member of Kafka consumer group ``group_id`` reading ``topics`` from ``bootstrap``.

    Offsets are committed only by ``commit()`` and on rebalance: before partitions are revoked,
    ``on_revoke()`` (the worker's flush) runs and then the positions of the revoked partitions are
    committed, so the next owner starts right after what this worker made durable.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        group_id: str,
        *,
        on_revoke: Callable[[], None] | None = None,
        client_id: str = "crossrec-worker",
        fetch_max_wait_ms: int = 100,
        max_poll_interval_ms: int = 300_000,
    ) -> None:
        if not topics:
            raise ValueError("topics=[] is empty; give at least one topic to consume")
        if not group_id:
            raise ValueError(f"group_id={group_id!r}: a consumer group name is required")
        from kafka import AsyncConsumerRebalanceListener, KafkaConsumer  # lazy: no Kafka client at import

        source = self

        # Listeners run on the client's IO thread, which must not block on the network: the
        # revoked partitions' offsets are committed asynchronously (a lost commit only means a
        # redelivery, which idempotent handlers absorb).
        class _Listener(AsyncConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked):
                source._on_revoked(revoked)

            async def on_partitions_assigned(self, assigned):
                pass

        self._on_revoke = on_revoke
        self._done: dict = {}  # TopicPartition -> next offset to commit
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group_id,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # Tansu does not answer a waiting fetch the moment data arrives: on a quiet topic
            # the wait is the latency floor (measured: 100 ms adds ~25-70 ms at p50, 20 ms ~6-24
            # ms), while shorter waits cost idle polling (20 ms ~9% of a core, 100 ms ~2%).
            fetch_max_wait_ms=fetch_max_wait_ms,
            max_poll_interval_ms=max_poll_interval_ms,
            # kafka-python checks CRC32C in pure Python (~90 us a record, the largest cost of a
            # fetch); TCP checksums the transfer and Tansu validated the batch on produce.
            check_crcs=False,
            **consumer_settings(),
        )
        self._consumer.subscribe(list(topics), listener=_Listener())

    def _on_revoked(self, revoked) -> None:
        if self._on_revoke is not None:
            self._on_revoke()
        offsets = {tp: self._done.pop(tp) for tp in list(revoked) if tp in self._done}
        if offsets:
            self._consumer.commit_async(self._offsets(offsets))

    @staticmethod
    def _offsets(offsets: dict) -> dict:
        from kafka.structs import OffsetAndMetadata

        return {tp: OffsetAndMetadata(off, "", -1) for tp, off in offsets.items()}

    def _commit(self, offsets: dict) -> None:
        self._consumer.commit(self._offsets(offsets))

    def assignment(self) -> list[tuple[str, int]]:
        return sorted((tp.topic, tp.partition) for tp in self._consumer.assignment())

    def poll(self, timeout_s: float, max_records: int) -> list[Delivery]:
        batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        received = time.time()
        out = []
        for tp, records in batches.items():
            for rec in records:
                try:
                    event, error = decode_event(rec.value), None
                except EventSchemaError as exc:
                    event, error = None, str(exc)
                out.append(Delivery(tp.topic, tp.partition, rec.offset, rec.value, event, error, received))
            if records:
                self._done[tp] = records[-1].offset + 1
        return out

    def commit(self, wait: bool = True) -> None:
        from kafka.errors import CommitFailedError

        if not self._done:
            return
        if not wait:
            # A lost async commit only widens the replayed tail; the next commit covers it.
            self._consumer.commit_async(self._offsets(self._done))
            return
        try:
            self._commit(dict(self._done))
        except CommitFailedError:
            # The group rebalanced under us: these partitions are someone else's now and will be
            # redelivered there; idempotent application makes that harmless.
            self._done.clear()

    def lag(self) -> dict[tuple[str, int], int | None]:
        # Tansu's ListOffsets(latest) can be too low: use the high-water mark of fetch responses.
        out: dict[tuple[str, int], int | None] = {}
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            out[(tp.topic, tp.partition)] = None if high is None else max(0, high - self._consumer.position(tp))
        return out

    def close(self) -> None:
        self._consumer.close(autocommit=False)


class MemoryEventSource(EventSource):
    """Events held in memory, one partition per topic: unit tests of worker logic without a broker
    (integration tests keep the real one). Messages are raw bytes (or events, encoded as the
    producer would), so decoding and dead letters behave as with Kafka. ``close()`` forgets what
    was delivered but not committed, and ``reopen()`` delivers it again: at-least-once, as a
    consumer-group restart would."""

    def __init__(self, messages: dict[str, Sequence[Event | bytes]] | None = None) -> None:
        self._log: dict[str, list[bytes]] = {}
        self._position: dict[str, int] = {}
        self._committed: dict[str, int] = {}
        self.closed = False
        for topic, items in (messages or {}).items():
            self.add(topic, items)

    def add(self, topic: str, messages: Sequence[Event | bytes]) -> None:
        """Append ``messages`` to ``topic`` (created on first use)."""
        log = self._log.setdefault(topic, [])
        self._position.setdefault(topic, 0)
        self._committed.setdefault(topic, 0)
        log.extend(m if isinstance(m, (bytes, bytearray)) else m.to_json() for m in messages)

    def poll(self, timeout_s: float, max_records: int) -> list[Delivery]:
        if self.closed:
            raise RuntimeError("poll() on a closed MemoryEventSource: reopen() it first")
        out: list[Delivery] = []
        for topic, log in self._log.items():
            while self._position[topic] < len(log) and len(out) < max_records:
                offset = self._position[topic]
                raw = log[offset]
                try:
                    event, error = decode_event(raw), None
                except EventSchemaError as exc:
                    event, error = None, str(exc)
                out.append(Delivery(topic, 0, offset, raw, event, error, time.time()))
                self._position[topic] += 1
        return out

    def commit(self, wait: bool = True) -> None:
        self._committed = dict(self._position)

    def lag(self) -> dict[tuple[str, int], int | None]:
        return {(topic, 0): len(log) - self._position[topic] for topic, log in self._log.items()}

    def close(self) -> None:
        self.closed = True
        self._position = dict(self._committed)

    def reopen(self) -> "MemoryEventSource":
        """Start reading again after ``close()``, from the last commit."""
        self.closed = False
        return self
