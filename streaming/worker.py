"""The consumer loop: poll, route to handlers, dead-letter the bad, flush, commit; and a process pool.

Delivery is at-least-once: offsets are committed only after every handler flushed (and the
dead letters were acknowledged by the broker), so a crash or a rebalance replays at most the
uncommitted tail, which idempotent handlers ignore. Backpressure: the loop is synchronous (it never
fetches more while handlers work) and shrinks its batch when a batch takes longer than
``target_batch_s``, growing it back when the downstream catches up.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from crossrec_core.errors import CrossrecError
from streaming.events import DeadLetter, Event, Topics
from streaming.handlers import Handler
from streaming.producer import EventProducer, ensure_topics
from streaming.source import Delivery, EventSource, KafkaEventSource

__all__ = ["ConsumerConfig", "ConsumerStats", "HandlerFactory", "WorkerPool", "run_consumer", "run_workers", "merge_stats"]

_DLQ_PAYLOAD_CHARS = 4096


@dataclass(frozen=True)
class ConsumerConfig:
    """One worker's settings. ``max_events``/``idle_timeout_s`` end the loop (both None: run until
    stopped). ``commit_interval_s`` bounds how much is replayed after a crash."""

    bootstrap: str
    group_id: str = "crossrec-workers"
    topics: Topics = Topics()
    consume: tuple[str, ...] = ("user_events",)
    max_batch: int = 1000
    min_batch: int = 50
    target_batch_s: float = 0.5
    commit_interval_s: float = 0.25
    poll_timeout_s: float = 0.2
    max_events: int | None = None
    idle_timeout_s: float | None = None
    fetch_max_wait_ms: int = 100  # Kafka fetch wait: the latency floor when the topic is quiet
    # no group generation this long: rejoin as a new member, then raise GroupJoinError (None: the
    # source's default, max_poll_interval + 30 s; see streaming.source.KafkaEventSource)
    join_timeout_s: float | None = None

    def __post_init__(self) -> None:
        names = ("user_events", "item_events", "creative_requests", "creative_results", "creative_feedback")
        bad = [c for c in self.consume if c not in names]
        if bad or not self.consume:
            raise ValueError(f"consume={self.consume!r}: choose among {names}")
        if not 1 <= self.min_batch <= self.max_batch:
            raise ValueError(f"min_batch={self.min_batch}, max_batch={self.max_batch}: need 1 <= min_batch <= max_batch")
        if not 1 <= self.fetch_max_wait_ms <= 10_000:
            raise ValueError(f"fetch_max_wait_ms={self.fetch_max_wait_ms!r}: choose 1..10000")
        if self.join_timeout_s is not None and not self.join_timeout_s > 0:
            raise ValueError(f"join_timeout_s={self.join_timeout_s!r} must be > 0 seconds (None: the default)")
        for name in ("target_batch_s", "commit_interval_s", "poll_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be > 0")

    def topic_names(self) -> list[str]:
        return [getattr(self.topics, c) for c in self.consume]


@dataclass
class ConsumerStats:
    """What a worker did. Latencies are producer ``sent_at`` -> applied, in milliseconds."""

    consumed: int = 0
    applied: int = 0
    duplicates: int = 0
    stale: int = 0
    unknown_items: int = 0
    published: int = 0
    dlq: int = 0
    dlq_reasons: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    commits: int = 0
    lag: int = 0
    elapsed_s: float = 0.0
    cpu_s: float = 0.0  # CPU time of the worker process (all threads) while consuming
    first_applied_at: float | None = None
    last_applied_at: float | None = None
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    # sent_at -> handed out by poll(): the broker and client share of the latency.
    receive_latencies_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def events_per_s(self) -> float:
        return self.consumed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def percentile_ms(self, q: float, receive: bool = False) -> float | None:
        """``q``-th percentile of sent_at -> applied (``receive``: sent_at -> received) latency."""
        values = self.receive_latencies_ms if receive else self.latencies_ms
        return float(np.percentile(values, q)) if values else None

    def summary(self) -> dict:
        """JSON-able counters (without the raw latencies)."""
        out = {k: v for k, v in self.__dict__.items() if not k.endswith("latencies_ms")}
        out.update(events_per_s=self.events_per_s, p50_ms=self.percentile_ms(50), p99_ms=self.percentile_ms(99),
                   receive_p50_ms=self.percentile_ms(50, True), receive_p99_ms=self.percentile_ms(99, True))
        return out


def merge_stats(parts: Sequence[ConsumerStats]) -> ConsumerStats:
    """Sum the counters of several workers (elapsed: the longest; latencies concatenated)."""
    total = ConsumerStats()
    for s in parts:
        for name in ("consumed", "applied", "duplicates", "stale", "unknown_items", "published", "dlq", "batches",
                     "commits", "lag", "cpu_s"):
            setattr(total, name, getattr(total, name) + getattr(s, name))
        for reason, n in s.dlq_reasons.items():
            total.dlq_reasons[reason] = total.dlq_reasons.get(reason, 0) + n
        total.elapsed_s = max(total.elapsed_s, s.elapsed_s)
        firsts = [t for t in (total.first_applied_at, s.first_applied_at) if t is not None]
        lasts = [t for t in (total.last_applied_at, s.last_applied_at) if t is not None]
        total.first_applied_at = min(firsts) if firsts else None
        total.last_applied_at = max(lasts) if lasts else None
        total.latencies_ms.extend(s.latencies_ms)
        total.receive_latencies_ms.extend(s.receive_latencies_ms)
    return total


def _reason_kind(reason: str) -> str:
    """A short category of a dead-letter reason for the counters ("invalid JSON", "unknown user_id" ...)."""
    head = reason.split(":")[0].split("=")[0]
    return head[:60]


class _Worker:
    def __init__(self, config: ConsumerConfig, source: EventSource, handlers: Sequence[Handler], dlq: EventProducer):
        self.config, self.source, self.handlers, self.dlq = config, source, list(handlers), dlq
        self.stats = ConsumerStats()
        self.batch = config.max_batch
        self._last_commit = time.monotonic()
        self._uncommitted = False

    def flush(self) -> None:
        self.dlq.flush()
        for h in self.handlers:
            h.flush()

    def dead_letter(self, d: Delivery, reason: str, event: Event | None = None) -> None:
        raw = d.raw or b""
        self.dlq.send(self.config.topics.dead_letter, DeadLetter(
            event_id=f"dlq:{d.topic}:{d.partition}:{d.offset}", timestamp=time.time(), source_topic=d.topic,
            partition=d.partition, offset=d.offset, reason=reason,
            payload=raw[:_DLQ_PAYLOAD_CHARS].decode("utf-8", errors="replace"), payload_bytes=len(raw)))
        self.stats.dlq += 1
        kind = _reason_kind(reason)
        self.stats.dlq_reasons[kind] = self.stats.dlq_reasons.get(kind, 0) + 1

    def _handle(self, handler: Handler, items: list[tuple[Delivery, Event]]) -> None:
        events = [e for _, e in items]
        try:
            result = handler.handle(events)
        except Exception as exc:  # a poison event: retry one by one to dead-letter only the culprit
            if len(items) == 1:
                self.dead_letter(items[0][0], f"handler {type(handler).__name__} failed: {type(exc).__name__}: {exc}")
                return
            for item in items:
                self._handle(handler, [item])
            return
        by_event = {id(e): d for d, e in items}
        for event, reason in result.rejected:
            self.dead_letter(by_event[id(event)], reason, event)
        for name in ("applied", "duplicates", "stale", "unknown_items", "published"):
            setattr(self.stats, name, getattr(self.stats, name) + getattr(result, name))

    def process(self, deliveries: list[Delivery]) -> None:
        started = time.monotonic()
        routed: list[list[tuple[Delivery, Event]]] = [[] for _ in self.handlers]
        for d in deliveries:
            if d.error is not None:
                self.dead_letter(d, d.error)
                continue
            targets = [i for i, h in enumerate(self.handlers) if isinstance(d.event, h.accepts)]
            if not targets:
                self.dead_letter(d, f"no handler for schema {d.event.SCHEMA!r} on topic {d.topic}")
            for i in targets:
                routed[i].append((d, d.event))
        for handler, items in zip(self.handlers, routed):
            if items:
                self._handle(handler, items)
        done = time.time()
        timed = [d for d in deliveries if d.event is not None and getattr(d.event, "sent_at", None) is not None]
        self.stats.latencies_ms.extend((done - d.event.sent_at) * 1000.0 for d in timed)
        self.stats.receive_latencies_ms.extend((d.received_at - d.event.sent_at) * 1000.0 for d in timed)
        self.stats.first_applied_at = self.stats.first_applied_at or done
        self.stats.last_applied_at = done
        self.stats.consumed += len(deliveries)
        self.stats.batches += 1
        self._uncommitted = True
        took = time.monotonic() - started
        # Backpressure: a slow downstream gets smaller batches (and so fewer fetched records).
        if took > self.config.target_batch_s:
            self.batch = max(self.config.min_batch, self.batch // 2)
        elif self.batch < self.config.max_batch:
            self.batch = min(self.config.max_batch, self.batch * 2)

    def commit(self, force: bool = False) -> None:
        """Flush handlers and commit offsets if anything was consumed since the last commit and
        ``commit_interval_s`` passed (or ``force``: then also wait for the broker's answer).
        Periodic commits do not wait, so the loop never stalls on the commit round trip."""
        if self._uncommitted and (force or time.monotonic() - self._last_commit >= self.config.commit_interval_s):
            self.flush()
            self.source.commit(wait=force)
            self.stats.commits += 1
            self._last_commit = time.monotonic()
            self._uncommitted = False


def run_consumer(
    config: ConsumerConfig,
    handlers: Sequence[Handler],
    *,
    stop: threading.Event | None = None,
    source: EventSource | None = None,
    on_ready: Callable[[], None] | None = None,
) -> ConsumerStats:
    """Consume ``config.topic_names()`` in group ``config.group_id`` and apply them with ``handlers``.

    Returns when ``stop`` is set, SIGTERM/SIGINT arrives (main thread only), ``config.max_events``
    were consumed, or nothing arrived for ``config.idle_timeout_s`` with zero lag. Always flushes
    and commits before returning (graceful shutdown). Handlers are not closed (the caller owns them).
    ``on_ready`` is called once, when the group first assigned partitions to this worker.
    """
    if not handlers:
        raise ValueError("handlers=[]: give at least one Handler")
    stop = stop or threading.Event()
    ensure_topics(config.bootstrap, config.topics)
    dlq = EventProducer(config.bootstrap, client_id=f"{config.group_id}-dlq")
    worker: _Worker | None = None

    def on_revoke() -> None:  # flush before the source commits revoked partitions
        if worker is not None:
            worker.flush()

    source = source or KafkaEventSource(config.bootstrap, config.topic_names(), config.group_id, on_revoke=on_revoke,
                                        fetch_max_wait_ms=config.fetch_max_wait_ms, join_timeout_s=config.join_timeout_s)
    worker = _Worker(config, source, handlers, dlq)
    restore = _install_signal_handlers(stop)
    started, cpu_started = time.monotonic(), time.process_time()
    idle_since = time.monotonic()
    try:
        while not stop.is_set():
            deliveries = source.poll(config.poll_timeout_s, worker.batch)
            if on_ready is not None and source.lag():
                on_ready()
                on_ready = None
            if deliveries:
                worker.process(deliveries)
                idle_since = time.monotonic()
                worker.commit()
                if config.max_events is not None and worker.stats.consumed >= config.max_events:
                    break
            else:
                worker.commit(force=True)  # idle: make the tail durable now
                if config.idle_timeout_s is not None and time.monotonic() - idle_since >= config.idle_timeout_s \
                        and _caught_up(source.lag()):
                    break
    finally:
        try:
            worker.commit(force=True)
            worker.stats.lag = sum(v for v in source.lag().values() if v)
        finally:
            worker.stats.elapsed_s = time.monotonic() - started
            worker.stats.cpu_s = time.process_time() - cpu_started
            source.close()
            dlq.close()
            restore()
    return worker.stats


def _caught_up(lag: dict) -> bool:
    """Partitions assigned, each high-water mark known, nothing left to read."""
    return bool(lag) and all(v == 0 for v in lag.values())


def _install_signal_handlers(stop: threading.Event) -> Callable[[], None]:
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


# Builds one worker process's handlers and returns them with a close function. It is pickled into
# spawned processes: a module-level function or a functools.partial of one (the composition root,
# ``crossrec.wiring``, makes them; streaming only transports).
HandlerFactory = Callable[[], tuple[Sequence[Handler], Callable[[], None]]]


def _worker_main(config: ConsumerConfig, handlers: HandlerFactory, results, ready) -> None:
    built, close = handlers()
    try:
        results.put(run_consumer(config, built, on_ready=lambda: ready.put(os.getpid())))
    except CrossrecError as exc:  # a group join that timed out...: the pool raises it with its message
        results.put(f"worker {os.getpid()}: {type(exc).__name__}: {exc}")
        raise
    finally:
        close()


class WorkerPool:
    """``n_workers`` processes of one group, each running ``run_consumer`` with the handlers that
    ``handlers()`` builds in that process; ``kill9`` simulates a crash."""

    def __init__(self, config: ConsumerConfig, n_workers: int, handlers: HandlerFactory) -> None:
        if n_workers < 1:
            raise ValueError(f"n_workers={n_workers!r}: at least 1 worker process is required")
        self._ctx = mp.get_context("spawn")  # no inherited Kafka sockets or SQLite handles
        self.config, self.handlers = config, handlers
        self._results, self._ready = self._ctx.Queue(), self._ctx.Queue()
        self.procs = [self._spawn() for _ in range(n_workers)]

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Block until every worker started so far has been assigned partitions once."""
        deadline = time.monotonic() + timeout_s
        for _ in range(self._unready):
            left = deadline - time.monotonic()
            try:
                self._ready.get(timeout=max(0.01, left))
            except queue.Empty:
                raise CrossrecError(f"workers not assigned partitions within timeout_s={timeout_s}") from None
            self._unready -= 1

    def _spawn(self):
        self._unready = getattr(self, "_unready", 0) + 1
        proc = self._ctx.Process(target=_worker_main, args=(self.config, self.handlers, self._results, self._ready), daemon=True)
        proc.start()
        return proc

    def kill9(self, i: int = 0, restart: bool = True) -> None:
        """SIGKILL worker ``i`` (no flush, no commit, no goodbye) and start a replacement."""
        os.kill(self.procs[i].pid, signal.SIGKILL)
        self.procs[i].join()
        if restart:
            self.procs[i] = self._spawn()
        else:
            self.procs.pop(i)

    def join(self, timeout_s: float | None = None) -> ConsumerStats:
        """Wait for every live worker to end (``max_events``/``idle_timeout_s``); merged stats."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        stats: list[ConsumerStats] = []
        try:
            while len(stats) < len(self.procs):
                if deadline is not None and time.monotonic() > deadline:
                    raise CrossrecError(f"workers did not finish within timeout_s={timeout_s}")
                try:
                    got = self._results.get(timeout=1.0)
                except queue.Empty:
                    if not any(p.is_alive() for p in self.procs) and self._results.empty():
                        codes = [p.exitcode for p in self.procs]
                        raise CrossrecError(
                            f"{len(self.procs) - len(stats)} worker process(es) died without stats (exit codes {codes})")
                    continue
                if isinstance(got, str):
                    raise CrossrecError(got)
                stats.append(got)
        finally:
            for p in self.procs:
                p.join(timeout=30)
        return merge_stats(stats)


def run_workers(config: ConsumerConfig, n_workers: int, handlers: HandlerFactory) -> ConsumerStats:
    """Run ``n_workers`` processes of the same group until each ends (``max_events`` is per worker;
    use ``idle_timeout_s`` to drain); merged stats."""
    return WorkerPool(config, n_workers, handlers).join()
