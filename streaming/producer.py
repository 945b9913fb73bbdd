"""Publishing events: a thin typed wrapper over ``KafkaProducer`` and topic creation."""

from __future__ import annotations

from typing import Iterable

from streaming.events import Event, Topics

__all__ = ["EventProducer", "ensure_topics"]


def ensure_topics(bootstrap: str, topics: Topics) -> list[str]:
    """Create the missing topics of ``topics`` with ``topics.partitions`` partitions; returns all names."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        existing = set(admin.list_topics())
        missing = [name for name in topics.all() if name not in existing]
        for name in missing:  # one by one: a concurrent creator makes only its own call fail
            try:
                admin.create_topics([NewTopic(name, num_partitions=topics.partitions, replication_factor=1)])
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()
    return list(topics.all())


class EventProducer:
    """Send events (validated by construction, keyed for per-entity ordering) to Kafka.

    ``acks="all"`` plus retries: a send either lands or raises at ``flush()``; a retried send may
    land twice or (with several requests in flight) out of order, which consumers absorb through
    event ids and order-independent application. ``linger_ms`` trades latency for throughput.
    """

    def __init__(self, bootstrap: str, *, linger_ms: int = 5, client_id: str = "crossrec-producer",
                 timeout_ms: int = 180_000) -> None:
        """``timeout_ms`` bounds both a send's wait for metadata and its delivery (a request
        path wants seconds, not the batch default of 3 minutes)."""
        from kafka import KafkaProducer

        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            acks="all",
            linger_ms=linger_ms,
            retries=2**31 - 1,
            request_timeout_ms=max(1, min(30_000, timeout_ms - linger_ms - 1)),  # kafka: delivery > linger + request
            delivery_timeout_ms=timeout_ms,
            max_block_ms=timeout_ms,
            batch_size=256 * 1024,  # Tansu stores one S3 object per produced batch: fewer, larger ones
        )
        self.sent = 0
        self._partitions: dict[tuple[str, bytes], int] = {}

    def send(self, topic: str, event: Event, sent_at: float | None = None):
        """Queue ``event`` on ``topic`` keyed by ``event.key()``, stamped with ``sent_at`` if given;
        returns the send future."""
        return self.send_raw(topic, event.key(), event.to_json(sent_at))

    def send_many(self, topic: str, events: Iterable[Event]) -> int:
        n = 0
        for event in events:
            self.send(topic, event)
            n += 1
        return n

    def send_raw(self, topic: str, key: bytes | None, value: bytes | None):
        """Queue raw bytes (the dead-letter topic and bad-input tests need unvalidated payloads)."""
        future = self._producer.send(topic, key=key, value=value, partition=self._partition(topic, key))
        self.sent += 1
        return future

    def _partition(self, topic: str, key: bytes | None) -> int | None:
        """The default (murmur2) partition of ``key``, cached: hashing is a quarter of a send's cost."""
        if key is None:
            return None
        found = self._partitions.get((topic, key))
        if found is None:
            from kafka.partitioner.default import murmur2

            parts = sorted(self._producer.partitions_for(topic))
            found = self._partitions[(topic, key)] = parts[(murmur2(key) & 0x7FFFFFFF) % len(parts)]
        return found

    def partitions_for(self, topic: str) -> set[int]:
        """Partition ids of ``topic`` (fetches metadata: also a connectivity check)."""
        return self._producer.partitions_for(topic)

    def flush(self, timeout_s: float | None = None) -> None:
        self._producer.flush(timeout=timeout_s)

    def close(self) -> None:
        self._producer.close()

    def __enter__(self) -> "EventProducer":
        return self

    def __exit__(self, *exc) -> None:
        self.flush()
        self.close()
