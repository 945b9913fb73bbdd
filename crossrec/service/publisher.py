"""Publishing from the request path: acknowledged by the broker or refused with 503, never lost.

A publish waits for the broker's acknowledgement of every event (``acks=all``) within
``timeout_s``; when the broker is down it raises ``BrokerUnavailableError`` instead, and the
caller retries with the same event ids (the consumers apply an event id once). The producer is
created lazily and again after a failure (at most once per ``retry_after_s``), so the service
starts without a broker and recovers by itself when the broker comes back.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Sequence

from crossrec_core.errors import CrossrecError
from streaming.events import Event

__all__ = ["BrokerUnavailableError", "EventPublisher", "PublishReceipt"]


class BrokerUnavailableError(CrossrecError):
    """The broker did not acknowledge in time (or none is configured): nothing may be counted as stored."""


@dataclass(frozen=True)
class PublishReceipt:
    topic: str
    events: int
    seconds: float  # send -> last broker acknowledgement


class EventPublisher:
    """Thread-safe; one per process. ``state()`` is ``up``, ``down`` or ``unknown`` (nothing sent yet)."""

    def __init__(self, bootstrap: str | None, *, timeout_s: float = 5.0, retry_after_s: float = 2.0,
                 client_id: str = "crossrec-service") -> None:
        self.bootstrap, self.timeout_s, self.retry_after_s, self.client_id = bootstrap, timeout_s, retry_after_s, client_id
        self._producer = None
        self._lock = threading.Lock()
        self._state = "unknown" if bootstrap else "disabled"
        self._last_error = "" if bootstrap else "no broker configured (serve --bootstrap HOST:PORT)"
        self._failed_at = 0.0

    def state(self) -> dict:
        return {"state": self._state, "bootstrap": self.bootstrap, "last_error": self._last_error or None}

    def connect(self) -> bool:
        """Create the producer now (at startup, so the first request does not pay for it); False
        when the broker is unavailable (a later publish tries again)."""
        try:
            self._get_producer()
        except BrokerUnavailableError:
            return False
        self._state = "up"
        return True

    def _get_producer(self):
        with self._lock:
            if self._producer is not None:
                return self._producer
            if not self.bootstrap:
                raise BrokerUnavailableError(f"event ingestion is off: {self._last_error}")
            wait = self._failed_at + self.retry_after_s - time.monotonic()
            if wait > 0:
                raise BrokerUnavailableError(f"the event broker at {self.bootstrap} is unavailable ({self._last_error}); "
                                             f"retry in {wait:.1f} s")
            from streaming.producer import EventProducer

            try:
                self._producer = EventProducer(self.bootstrap, linger_ms=1, client_id=self.client_id,
                                               timeout_ms=int(self.timeout_s * 1000))
            except Exception as exc:  # kafka raises NoBrokersAvailable, KafkaTimeoutError, OSError ...
                self._down(exc)
                raise BrokerUnavailableError(f"the event broker at {self.bootstrap} is unavailable ({self._last_error})") from None
            return self._producer

    def _down(self, exc: BaseException) -> None:
        self._state, self._last_error, self._failed_at = "down", f"{type(exc).__name__}: {exc}"[:300], time.monotonic()

    def publish(self, topic: str, events: Sequence[Event], stamp: bool = True) -> PublishReceipt:
        """Send ``events`` to ``topic`` and wait for the broker to acknowledge all of them; raises
        ``BrokerUnavailableError`` when it does not within ``timeout_s`` (some may have landed:
        a retry with the same event ids is applied once)."""
        producer = self._get_producer()
        start = time.perf_counter()
        try:
            now = time.time() if stamp else None
            futures = [producer.send(topic, e, sent_at=now if "sent_at" in type(e).model_fields else None) for e in events]
            deadline = time.monotonic() + self.timeout_s
            for f in futures:
                f.get(timeout=max(0.01, deadline - time.monotonic()))
        except Exception as exc:
            self._down(exc)
            with self._lock:  # a fresh producer next time: the old one may hold a dead connection's backlog
                old, self._producer = self._producer, None
            if old is not None:
                threading.Thread(target=old.close, daemon=True).start()  # closing waits on the backlog
            raise BrokerUnavailableError(f"the event broker at {self.bootstrap} did not acknowledge within "
                                         f"{self.timeout_s:.0f} s ({self._last_error})") from None
        self._state, self._last_error = "up", ""
        return PublishReceipt(topic, len(futures), time.perf_counter() - start)

    def close(self) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.close()
