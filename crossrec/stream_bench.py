"""``crossrec stream bench``: end-to-end throughput, latency, crash and broker-restart scenarios.

Every scenario uses fresh topics and a fresh profile store and checks the final profiles against
a Kafka-free load of the same events (``recsys.ProfileStore.apply``): ``lost`` counts expected
events missing from the store, ``duplicates`` events counted more than once, ``identical`` compares
the store fingerprints. Worker processes run the real consumer (``run_consumer``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from crossrec.wiring import ProfileWiring, profile_worker
from crossrec_core.persist import atomic_write_text
from streaming.broker import Broker, BrokerConfig, resolve_bootstrap
from streaming.events import MAX_EVENT_BYTES, ItemEvent, Topics, UserEvent
from streaming.producer import EventProducer, ensure_topics
from streaming.replay import movielens_events, publish, publish_parallel
from streaming.worker import ConsumerConfig, ConsumerStats, WorkerPool, run_consumer

__all__ = ["SCENARIOS", "BenchConfig", "run_bench", "bad_payloads"]

SCENARIOS = ("throughput", "latency", "kill9", "broker_restart", "new_item")
_JOIN_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class BenchConfig:
    """``n_events`` None = all 100k ratings. ``bootstrap`` None starts a private embedded broker
    under ``out_dir/broker`` (needed for ``broker_restart``)."""

    n_events: int | None = None
    workers: int = 2
    producers: int = 2
    latency_rate: float = 1000.0
    latency_events: int = 10_000
    crash_events: int = 20_000
    crash_rate: float = 4000.0
    scenarios: tuple[str, ...] = SCENARIOS
    out_dir: str = "runs/stream-bench"
    bootstrap: str | None = None
    data_dir: str | None = None
    storage: str = "s3"  # the private embedded broker's log: "s3" (durable) or "memory"
    fetch_max_wait_ms: int = 100
    partitions: int = 4  # of every topic the bench creates

    def __post_init__(self) -> None:
        bad = [s for s in self.scenarios if s not in SCENARIOS]
        if bad or not self.scenarios:
            raise ValueError(f"scenarios={self.scenarios!r}: choose among {SCENARIOS}")
        if self.partitions < 1:
            raise ValueError(f"partitions={self.partitions!r}: at least 1 partition is required")
        if self.workers < 1:
            raise ValueError(f"workers={self.workers!r}: at least 1 worker process is required")
        if self.bootstrap and "broker_restart" in self.scenarios:
            raise ValueError("scenario 'broker_restart' restarts the embedded broker: leave bootstrap unset")
        if self.storage == "memory" and "broker_restart" in self.scenarios:
            raise ValueError("scenario 'broker_restart' needs a durable log: use storage='s3' for it")


def bad_payloads(template: UserEvent) -> list[tuple[bytes, bytes | None]]:
    """(key, value) of malformed messages mixed into the benchmark stream: each is dead-lettered."""
    good = json.loads(template.to_json())
    return [
        (b"0", b"{not json"),
        (b"0", json.dumps({**good, "event_id": "bad-v", "v": 2}).encode()),
        (b"0", json.dumps({**good, "event_id": "bad-kind", "kind": "love"}).encode()),
        (b"0", b"x" * (MAX_EVENT_BYTES + 1)),
        (b"0", None),
    ]


def unknown_item_event(template: UserEvent) -> UserEvent:
    """A valid event naming an item outside the catalogue: applied to the history, counted as
    ``unknown_items`` (the profile store's documented behaviour), not dead-lettered."""
    return UserEvent(event_id="bench-unknown-item", timestamp=template.timestamp, user_id=template.user_id,
                     item_id=10_000_000, kind="click")


@dataclass
class _Check:
    lost: int
    duplicates: int
    identical: bool
    expected: int
    stored: int


def _movielens_genres(data_dir) -> dict[int, list[str]]:
    """Item id -> genre names: the catalogue the profile stores of the benchmark start with."""
    from crossrec_datasets import GENRES, load_movielens

    items = load_movielens(data_dir).items
    return {int(row["item_id"]): [g for g in GENRES if row.get(g)] for row in items.iter_rows(named=True)}


def _new_store(path: Path | None, genres: dict[int, list[str]]):
    from recsys.profiles import ProfileStore

    return ProfileStore(path, item_ids=list(genres), item_categories=genres)


def _check_store(store_path: Path, events: Sequence[UserEvent], genres: dict[int, list[str]]) -> _Check:
    """Compare the store with a direct load of ``events``: per user, events missing or extra."""
    from recsys.profiles import Interaction, ProfileStore

    got = ProfileStore.open(store_path)
    ref = _new_store(None, genres)
    ref.apply([Interaction(e.event_id, e.user_id, e.item_id, e.kind, e.timestamp, e.value) for e in events])
    expected = Counter(e.user_id for e in events)
    lost = duplicates = stored = 0
    for user in sorted(set(expected) | set(got.users())):
        profile = got.get(user)
        n = profile.n_events if profile else 0
        stored += n
        lost += max(0, expected[user] - n)
        duplicates += max(0, n - expected[user])
    identical = got.fingerprint() == ref.fingerprint()
    got.close()
    return _Check(lost, duplicates, identical, len(events), stored)


def _store_count(path: Path) -> int:
    import sqlite3

    if not path.exists():
        return 0
    conn = sqlite3.connect(str(path), timeout=10)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    except sqlite3.OperationalError:  # the table is not created yet
        return 0
    finally:
        conn.close()


class _Bench:
    def __init__(self, config: BenchConfig, bootstrap: str, broker: Broker | None) -> None:
        self.config, self.bootstrap, self.broker = config, bootstrap, broker
        self.out = Path(config.out_dir)
        self.run_id = f"b{os.getpid()}x{int(time.time())}"
        self.genres = _movielens_genres(config.data_dir)
        self._n = 0

    def fresh(self, name: str) -> tuple[Topics, Path]:
        self._n += 1
        topics = Topics(prefix=f"{self.run_id}-{name}-{self._n}", partitions=self.config.partitions)
        ensure_topics(self.bootstrap, topics)
        store = self.out / f"{name}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{store}{suffix}").unlink(missing_ok=True)
        _new_store(store, self.genres).close()  # the workers open it with its catalogue
        return topics, store

    def workers(self, topics: Topics, store: Path, group: str, n: int, idle_timeout_s: float) -> WorkerPool:
        """``n`` profile-worker processes of ``group`` on ``store`` (wired by ``crossrec.wiring``)."""
        config = ConsumerConfig(bootstrap=self.bootstrap, topics=topics, group_id=group, consume=("user_events",),
                                idle_timeout_s=idle_timeout_s, fetch_max_wait_ms=self.config.fetch_max_wait_ms)
        return WorkerPool(config, n, profile_worker(ProfileWiring(str(store)), config))

    # -- scenarios ---------------------------------------------------------------------------
    def throughput(self, events: list[UserEvent]) -> dict:
        """All events at full speed (plus malformed ones) through ``workers`` processes."""
        topics, store = self.fresh("throughput")
        bad = bad_payloads(events[0])
        n_bad = len(bad)
        events = events + [unknown_item_event(events[0])]
        # Idle long enough to outlast the start-up of the producer processes.
        workers = self.workers(topics, store, "bench-throughput", self.config.workers, idle_timeout_s=30.0)
        workers.wait_ready()
        with EventProducer(self.bootstrap) as producer:  # untimed: the malformed messages first
            for key, value in bad:
                producer.send_raw(topics.user_events, key, value)
        broker_cpu = self.broker_cpu_s()
        load_before = os.getloadavg()[0]
        sent = publish_parallel(self.bootstrap, topics.user_events, events, processes=self.config.producers)
        stats = workers.join()
        broker_cpu = None if broker_cpu is None else self.broker_cpu_s() - broker_cpu
        check = _check_store(store, events, self.genres)
        # CPU seconds spent per event by producers + workers (+ broker): the machine is shared, so
        # this says what the pipeline would do on cores of its own.
        cpu = sent.cpu_s + stats.cpu_s + (broker_cpu or 0.0)
        return {
            "events": len(events), "malformed_sent": n_bad, "workers": self.config.workers,
            "events_per_s": len(events) / (stats.last_applied_at - sent.started_at),
            "produce_events_per_s": sent.events_per_s, "producers": self.config.producers,
            "cpu_s": {"producers": sent.cpu_s, "workers": stats.cpu_s, "broker": broker_cpu},
            "cpu_us_per_event": cpu / len(events) * 1e6,
            "load_avg_1min": [load_before, os.getloadavg()[0]], "cores": os.cpu_count(),
            "consumer": stats.summary(), **asdict(check),
        }

    def broker_cpu_s(self) -> float | None:
        """CPU seconds used so far by the embedded Tansu + SeaweedFS processes (Linux /proc); an
        in-memory broker runs no SeaweedFS."""
        if self.broker is None:
            return None
        status = self.broker.status()
        total = 0.0
        for pid in (p for p in (status.tansu_pid, status.weed_pid) if p is not None):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                return None
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def latency(self, events: list[UserEvent]) -> dict:
        """Paced at ``latency_rate`` events/s from this process into one worker process (no shared
        GIL); latency = producer ``sent_at`` -> batch applied in the profile store."""
        topics, store = self.fresh("latency")
        workers = self.workers(topics, store, "bench-latency", 1, idle_timeout_s=5.0)
        workers.wait_ready()
        load_before = os.getloadavg()[0]
        # linger 5 ms: ~200 produce requests (S3 objects) a second instead of ~1,000 at 1 ms,
        # which costs the broker more than the 4 ms it saves.
        with EventProducer(self.bootstrap, linger_ms=5) as producer:
            sent = publish(producer, topics.user_events, events, rate=self.config.latency_rate)
        stats = workers.join()
        return {"events": len(events), "rate": self.config.latency_rate, "achieved_rate": sent.events_per_s,
                "p50_ms": stats.percentile_ms(50), "p90_ms": stats.percentile_ms(90), "p99_ms": stats.percentile_ms(99),
                "max_ms": max(stats.latencies_ms) if stats.latencies_ms else None, "applied": stats.applied,
                "receive_p50_ms": stats.percentile_ms(50, receive=True),
                "receive_p99_ms": stats.percentile_ms(99, receive=True),
                "load_avg_1min": [load_before, os.getloadavg()[0]]}

    def _interrupted(self, name: str, events: list[UserEvent], interrupt, idle_timeout_s: float) -> dict:
        """Produce ``events`` at ``crash_rate`` into one worker; when a third is in the store call
        ``interrupt(workers)``; drain, then check the store against a direct load."""
        topics, store = self.fresh(name)
        workers = self.workers(topics, store, f"bench-{name}", 1, idle_timeout_s=idle_timeout_s)
        workers.wait_ready()

        def produce() -> None:
            with EventProducer(self.bootstrap) as producer:
                publish(producer, topics.user_events, events, rate=self.config.crash_rate)

        producer = threading.Thread(target=produce)
        producer.start()
        while _store_count(store) < len(events) // 3:
            time.sleep(0.02)
        at = _store_count(store)
        started = time.monotonic()
        interrupt(workers)
        took = time.monotonic() - started
        producer.join()
        stats = workers.join()
        return {"events": len(events), "interrupted_at_applied": at, "interruption_s": took,
                "redelivered": stats.duplicates, **asdict(_check_store(store, events, self.genres))}

    def kill9(self, events: list[UserEvent]) -> dict:
        """SIGKILL the worker mid-replay (no flush, no commit); a new worker process resumes."""
        return self._interrupted("kill9", events, lambda workers: workers.kill9(), idle_timeout_s=6.0)

    def broker_restart(self, events: list[UserEvent]) -> dict:
        """Restart Tansu and SeaweedFS mid-replay; the producer and the worker reconnect."""
        return self._interrupted("restart", events, lambda workers: self.broker.restart(), idle_timeout_s=10.0)

    def new_item(self) -> dict:
        """Grocery catalogue in a FAISS index; new item events, timed from sent_at until searchable."""
        from crossrec_datasets import load_grocery
        from retrieval.index import create_index
        from retrieval import load_item_embedder
        from streaming.handlers import ItemIndexHandler

        topics, _ = self.fresh("items")
        embedder = load_item_embedder()
        products = load_grocery(self.config.data_dir).products
        base = products[: len(products) // 2]
        vectors = embedder.embed_items([p.description for p in base], [str(p.iconic_image) for p in base])
        index = create_index(vectors.shape[1], expected_size=len(products), kind="flat")
        index.add(np.array([p.class_id for p in base], dtype=np.int64), vectors)
        new = products[len(products) // 2:][:10]
        # The worker measures sent_at -> handled (index.add returned: the item is searchable).
        config = ConsumerConfig(bootstrap=self.bootstrap, topics=topics, group_id="bench-items",
                                consume=("item_events",), max_events=len(new))
        result: dict = {}
        ready = threading.Event()
        thread = threading.Thread(target=lambda: result.setdefault(
            "stats", run_consumer(config, [ItemIndexHandler(index, embedder)], on_ready=ready.set)))
        thread.start()
        ready.wait(_JOIN_TIMEOUT_S)
        with EventProducer(self.bootstrap, linger_ms=1) as producer:
            for p in new:  # one at a time, as a catalogue feed would
                producer.send(topics.item_events, ItemEvent(
                    event_id=f"bench-item:{p.class_id}", timestamp=time.time(), item_id=p.class_id, text=p.description,
                    categories=[p.category, p.coarse_name], image_path=str(p.iconic_image), sent_at=time.time()))
                producer.flush()
                time.sleep(0.5)
        thread.join(timeout=60)
        stats: ConsumerStats = result["stats"]
        found = 0
        for p in new:
            query = embedder.embed_items([p.description], [str(p.iconic_image)])
            found += int(p.class_id in index.search(query, 5).ids[0].tolist())
        return {"items": len(new), "applied": stats.applied, "found_in_top5_by_own_vector": found,
                "embedder": type(embedder).__name__, "p50_ms": stats.percentile_ms(50),
                "max_ms": max(stats.latencies_ms) if stats.latencies_ms else None}


def run_bench(config: BenchConfig, json_path: str | os.PathLike | None = None, progress: bool = True) -> dict:
    """Run ``config.scenarios`` and return (and write to ``json_path``) the figures.

    Top-level keys: ``events_per_s`` (throughput), ``p50_ms``/``p99_ms`` (latency at
    ``latency_rate``), ``lost``/``duplicates`` (summed over the store checks), ``dlq`` (dead letters
    of the throughput run), and ``scenarios`` with each scenario's details.
    """
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    broker = None if config.bootstrap else Broker(BrokerConfig(data_dir=str(out / "broker"), kafka_port=0, s3_port=0,
                                                            storage=config.storage))
    if broker is not None:
        broker.start()
    try:
        bench = _Bench(config, resolve_bootstrap(config.bootstrap) if config.bootstrap else broker.bootstrap, broker)
        needed = max(config.n_events or 0, config.latency_events, config.crash_events)
        events = movielens_events(config.data_dir, None if config.n_events is None else needed)
        results: dict = {}
        for name in config.scenarios:
            if progress:
                print(f"[stream bench] {name} ...", flush=True)
            if name == "throughput":
                results[name] = bench.throughput(events[: config.n_events] if config.n_events else events)
            elif name == "latency":
                results[name] = bench.latency(events[: config.latency_events])
            elif name == "kill9":
                results[name] = bench.kill9(events[: config.crash_events])
            elif name == "broker_restart":
                results[name] = bench.broker_restart(events[: config.crash_events])
            else:
                results[name] = bench.new_item()
            if progress:
                print(json.dumps({name: results[name]}, default=str)[:2000], flush=True)
    finally:
        if broker is not None and broker.owned:
            broker.stop()
    checks = [r for r in results.values() if "lost" in r]
    summary = {
        "events_per_s": results.get("throughput", {}).get("events_per_s"),
        "p50_ms": results.get("latency", {}).get("p50_ms"),
        "p99_ms": results.get("latency", {}).get("p99_ms"),
        "lost": sum(r["lost"] for r in checks),
        "duplicates": sum(r["duplicates"] for r in checks),
        "dlq": results.get("throughput", {}).get("consumer", {}).get("dlq"),
        "new_item_searchable_ms_max": results.get("new_item", {}).get("max_ms"),
        "broker": "external" if config.bootstrap else f"embedded, {config.storage} log",
        "fetch_max_wait_ms": config.fetch_max_wait_ms,
        "partitions": config.partitions,
        "scenarios": results,
    }
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(summary, indent=2, default=str))
    return summary
