"""Where workers read events from: the ``EventSource`` base and its Kafka consumer-group version.

A source hands out ``Delivery`` records (decoded event, or the decoding error for the dead-letter
topic) and commits only what the worker says it has made durable: at-least-once delivery.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Sequence

from crossrec_core.errors import CrossrecError
from streaming.events import Event, EventSchemaError, decode_event

__all__ = ["Delivery", "EventSource", "KafkaEventSource", "MemoryEventSource", "GroupJoinError", "consumer_settings"]

_log = logging.getLogger(__name__)


class GroupJoinError(CrossrecError):
    """A consumer could not join (or rejoin) its consumer group within its join timeout, even
    as a new member."""


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

    The group join is bounded: kafka-python's ``poll(timeout_ms)`` gives up waiting for a join
    after ``timeout_ms`` but leaves the JoinGroup in flight and retries it at the next poll,
    forever, and a member that never joins never has partitions, so a loop waiting for work (or
    for zero lag) would wait forever. When this member has held no group generation for
    ``join_timeout_s`` (polling all along), it leaves and joins again as a new member (a new
    member id: the broker's view of the old one may be what blocks); when that one does not join
    within ``join_timeout_s`` either, ``poll`` raises :class:`GroupJoinError`. The default allows
    the longest legitimate wait: a rebalance waits up to ``max_poll_interval_ms`` for the other
    members to rejoin (one may be in a long batch).
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
        join_timeout_s: float | None = None,
    ) -> None:
        if not topics:
            raise ValueError("topics=[] is empty; give at least one topic to consume")
        if not group_id:
            raise ValueError(f"group_id={group_id!r}: a consumer group name is required")
        if join_timeout_s is not None and not join_timeout_s > 0:
            raise ValueError(f"join_timeout_s={join_timeout_s!r}: must be > 0 seconds (None: the default)")
        self._settings = dict(bootstrap=bootstrap, topics=list(topics), group_id=group_id, client_id=client_id,
                              fetch_max_wait_ms=fetch_max_wait_ms, max_poll_interval_ms=max_poll_interval_ms)
        self.join_timeout_s = join_timeout_s if join_timeout_s is not None else max_poll_interval_ms / 1000 + 30.0
        self._on_revoke = on_revoke
        self._done: dict = {}  # TopicPartition -> next offset to commit
        self._unjoined_since: float | None = time.monotonic()
        self._rejoined = False
        self._consumer = self._new_consumer()

    def _new_consumer(self):
        from kafka import AsyncConsumerRebalanceListener, KafkaConsumer  # lazy: no Kafka client at import

        source, cfg = self, self._settings

        # Listeners run on the client's IO thread, which must not block on the network: the
        # revoked partitions' offsets are committed asynchronously (a lost commit only means a
        # redelivery, which idempotent handlers absorb).
        class _Listener(AsyncConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked):
                source._on_revoked(revoked)

            async def on_partitions_assigned(self, assigned):
                pass

        consumer = KafkaConsumer(
            bootstrap_servers=cfg["bootstrap"],
            group_id=cfg["group_id"],
            client_id=cfg["client_id"],
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # Tansu does not answer a waiting fetch the moment data arrives: on a quiet topic
            # the wait is the latency floor (measured: 100 ms adds ~25-70 ms at p50, 20 ms ~6-24
            # ms), while shorter waits cost idle polling (20 ms ~9% of a core, 100 ms ~2%).
            fetch_max_wait_ms=cfg["fetch_max_wait_ms"],
            max_poll_interval_ms=cfg["max_poll_interval_ms"],
            # kafka-python checks CRC32C in pure Python (~90 us a record, the largest cost of a
            # fetch); TCP checksums the transfer and Tansu validated the batch on produce.
            check_crcs=False,
            **consumer_settings(),
        )
        consumer.subscribe(cfg["topics"], listener=_Listener())
        return consumer

    def joined(self) -> bool:
        """Whether this member holds the group's current generation (its assignment is valid).
        kafka-python has no public accessor; its coordinator's ``need_rejoin`` is what its own
        poll checks before joining."""
        return not self._consumer._coordinator.need_rejoin()

    def _check_join(self) -> None:
        now = time.monotonic()
        if self.joined():
            self._unjoined_since, self._rejoined = None, False
            return
        if self._unjoined_since is None:
            self._unjoined_since = now
            return
        waited = now - self._unjoined_since
        if waited < self.join_timeout_s:
            return
        cfg = self._settings
        where = f"group {cfg['group_id']!r} on {cfg['bootstrap']} (topics {', '.join(cfg['topics'])})"
        if self._rejoined:
            raise GroupJoinError(f"could not join consumer {where} within join_timeout_s={self.join_timeout_s:g}, "
                                 "twice (the second time as a new member); is the broker's group coordinator stuck?")
        _log.warning("no group generation for %.0f s in %s: leaving and joining again as a new member", waited, where)
        self._consumer.close(autocommit=False)
        self._done.clear()  # uncommitted deliveries are redelivered: handlers are idempotent
        self._consumer = self._new_consumer()
        self._unjoined_since, self._rejoined = now, True

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
        if not batches:
            self._check_join()
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
