"""Producers for demos and benchmarks: MovieLens 100K ratings as a timed stream, and a shopper
simulator over the grocery catalogue."""

from __future__ import annotations

import os
import time
import zlib
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import polars as pl

from streaming.events import ItemEvent, Topics, UserEvent
from streaming.producer import EventProducer, ensure_topics

__all__ = [
    "ReplayStats",
    "movielens_events",
    "dataset_events",
    "replay_dataset",
    "grocery_item_events",
    "shopper_events",
    "publish",
    "publish_parallel",
    "replay_movielens",
    "simulate_shoppers",
    "MOVIELENS_SOURCE",
]

# Event ids are f"{MOVIELENS_SOURCE}:{user}:{item}:{timestamp}", the same as
# recsys.interactions_from_ratings(..., source=MOVIELENS_SOURCE): a replayed stream and a direct
# load of the ratings build identical profiles.
MOVIELENS_SOURCE = "ml100k"


@dataclass(frozen=True)
class ReplayStats:
    sent: int
    elapsed_s: float
    started_at: float  # wall clock (unix seconds) of the first send
    cpu_s: float = 0.0  # CPU time of the producing process(es), all threads

    @property
    def events_per_s(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


def dataset_events(dataset: str | os.PathLike = "ml100k", data_dir: str | os.PathLike | None = None,
                   limit: int | None = None) -> list[UserEvent]:
    """A data set's interactions (``ml100k`` or a folder, see ``crossrec_datasets.open_dataset``) as
    user events with the engine's int64 ids, in event-time order (ties by user, then item). Event
    ids are ``{source}:{user}:{item}:{timestamp}`` (``movielens`` for MovieLens), so a replay is
    idempotent; rows that cannot be events (unknown item, bad kind or timestamp) are skipped."""
    from crossrec_datasets import KINDS, open_dataset

    if limit is not None and limit < 1:
        raise ValueError(f"limit={limit!r}: give a positive number of events or None for all")
    ds = open_dataset(dataset, data_dir=data_dir)
    frame = (ds.interactions()
             .select(ds.users_map.to_internal("user_id").alias("u"), ds.items.to_internal("item_id").alias("i"),
                     pl.col("timestamp"), pl.col("kind"), pl.col("value"))
             .filter(pl.col("kind").is_in(list(KINDS)) & (pl.col("timestamp") >= 0)
                     & ((pl.col("kind") != "rating") | pl.col("value").is_not_null()))
             .drop_nulls(["u", "i", "timestamp"]).sort(["timestamp", "u", "i"]).collect())
    if limit is not None:
        frame = frame.head(limit)
    source = MOVIELENS_SOURCE if ds.name == "ml100k" else ds.name
    return [
        UserEvent(event_id=f"{source}:{u}:{i}:{t}", timestamp=float(t), user_id=int(u), item_id=int(i), kind=k,
                  value=float(v) if k == "rating" else None)
        for u, i, t, k, v in frame.iter_rows()
    ]


def movielens_events(data_dir: str | os.PathLike | None = None, limit: int | None = None) -> list[UserEvent]:
    """MovieLens 100K ratings as ``rating`` user events in event-time order (``dataset_events``)."""
    return dataset_events("ml100k", data_dir, limit)


def grocery_item_events(data_dir: str | os.PathLike | None = None, timestamp: float = 0.0) -> list[ItemEvent]:
    """One ``upsert`` per grocery product: description text, iconic image path, categories."""
    from crossrec_datasets import load_grocery

    return [
        ItemEvent(event_id=f"grocery-item:{p.class_id}:{timestamp}", timestamp=timestamp, item_id=p.class_id,
                  op="upsert", text=p.description, categories=[p.category, p.coarse_name], image_path=str(p.iconic_image))
        for p in load_grocery(data_dir).products
    ]


def shopper_events(item_ids: Sequence[int], item_groups: Sequence[str], *, n_users: int = 50, n_events: int = 2000,
                   seed: int = 0, start_ts: float = 1.7e9) -> list[UserEvent]:
    """Simulated shopping sessions: each user prefers a few item groups (Dirichlet); a session is
    a view, then with falling odds a click, an add-to-cart and a purchase of the same item."""
    if len(item_ids) != len(item_groups) or not item_ids:
        raise ValueError(f"item_ids ({len(item_ids)}) and item_groups ({len(item_groups)}) must be equal, non-empty")
    if n_users < 1 or n_events < 1:
        raise ValueError(f"n_users={n_users}, n_events={n_events}: both must be >= 1")
    rng = np.random.default_rng(seed)
    groups = sorted(set(item_groups))
    members = {g: [i for i, gi in zip(item_ids, item_groups) if gi == g] for g in groups}
    taste = rng.dirichlet(np.full(len(groups), 0.3), size=n_users)
    funnel = (("view", 1.0), ("click", 0.5), ("add_to_cart", 0.4), ("purchase", 0.5))
    out: list[UserEvent] = []
    ts = start_ts
    while len(out) < n_events:
        user = int(rng.integers(n_users))
        group = groups[int(rng.choice(len(groups), p=taste[user]))]
        item = int(rng.choice(members[group]))
        for kind, p in funnel:
            if rng.random() > p or len(out) >= n_events:
                break
            ts += float(rng.exponential(5.0))
            out.append(UserEvent(event_id=f"shop:{seed}:{len(out)}", timestamp=round(ts, 3), user_id=user + 1,
                                 item_id=item, kind=kind))
    return out


def publish(
    producer: EventProducer,
    topic: str,
    events: Iterable[UserEvent | ItemEvent],
    *,
    speed: float | None = None,
    rate: float | None = None,
    progress: bool = False,
) -> ReplayStats:
    """Send ``events`` in order, stamping ``sent_at``. Pacing: ``speed`` (event-time seconds per
    wall second, e.g. 86400 = a day per second) or ``rate`` (events per second); neither = as fast
    as possible."""
    if speed is not None and rate is not None:
        raise ValueError(f"speed={speed!r} and rate={rate!r}: give at most one pacing")
    for name, value in (("speed", speed), ("rate", rate)):
        if value is not None and not value > 0:
            raise ValueError(f"{name}={value!r} must be > 0")
    from tqdm import tqdm

    events = list(events)
    start, cpu_start = time.time(), time.process_time()
    t0 = events[0].timestamp if events else 0.0
    for n, event in enumerate(tqdm(events, desc=f"publish {topic}", unit="ev", disable=not progress)):
        due = start + ((event.timestamp - t0) / speed if speed else n / rate if rate else 0.0)
        delay = due - time.time()
        if delay > 0.001:
            time.sleep(delay)
        producer.send(topic, event, sent_at=time.time())
    producer.flush()
    return ReplayStats(sent=len(events), elapsed_s=time.time() - start, started_at=start,
                       cpu_s=time.process_time() - cpu_start)


def _publish_part(bootstrap: str, topic: str, events: list, rate: float | None, linger_ms: int, barrier, results) -> None:
    with EventProducer(bootstrap, linger_ms=linger_ms, client_id="crossrec-replay") as producer:
        producer.partitions_for(topic)  # fetch metadata before the start line
        barrier.wait()
        results.put(publish(producer, topic, events, rate=rate))


def publish_parallel(
    bootstrap: str,
    topic: str,
    events: Sequence[UserEvent | ItemEvent],
    *,
    processes: int = 2,
    rate: float | None = None,
    linger_ms: int = 20,
) -> ReplayStats:
    """Publish from ``processes`` producer processes (kafka-python spends ~0.1 ms of CPU per send).

    Events are split by key, so each user's (or item's) events keep their order. ``rate`` is the
    total. Timing starts when every process is connected (a barrier), so start-up is excluded.
    """
    if processes < 1:
        raise ValueError(f"processes={processes!r}: at least 1 producer process is required")
    import multiprocessing as mp

    parts: list[list] = [[] for _ in range(processes)]
    for event in events:
        parts[zlib.crc32(event.key()) % processes].append(event)
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(processes + 1), ctx.Queue()
    per_rate = None if rate is None else rate / processes
    procs = [ctx.Process(target=_publish_part, args=(bootstrap, topic, part, per_rate, linger_ms, barrier, results))
             for part in parts]
    for proc in procs:
        proc.start()
    barrier.wait()
    start = time.time()
    try:
        parts_done = [results.get(timeout=3600) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=60)
    end = max(p.started_at + p.elapsed_s for p in parts_done)
    return ReplayStats(sent=sum(p.sent for p in parts_done), elapsed_s=end - start, started_at=start,
                       cpu_s=sum(p.cpu_s for p in parts_done))


def replay_dataset(
    bootstrap: str,
    dataset: str | os.PathLike = "ml100k",
    *,
    topics: Topics = Topics(),
    speed: float | None = None,
    rate: float | None = None,
    limit: int | None = None,
    data_dir: str | os.PathLike | None = None,
    processes: int = 1,
    progress: bool = True,
) -> ReplayStats:
    """Publish a data set's interactions (MovieLens 100K ratings, or a folder's events; all, or the
    first ``limit`` by time) to ``topics.user_events``.

    ``processes`` > 1 publishes from several processes (split by user; ``speed`` pacing needs 1).
    """
    ensure_topics(bootstrap, topics)
    events = dataset_events(dataset, data_dir, limit)
    if processes > 1:
        if speed is not None:
            raise ValueError(f"speed={speed!r} with processes={processes}: event-time pacing needs processes=1")
        return publish_parallel(bootstrap, topics.user_events, events, processes=processes, rate=rate)
    with EventProducer(bootstrap, client_id="crossrec-replay") as producer:
        return publish(producer, topics.user_events, events, speed=speed, rate=rate, progress=progress)


def replay_movielens(bootstrap: str, **options) -> ReplayStats:
    """``replay_dataset(bootstrap, "ml100k", **options)``."""
    return replay_dataset(bootstrap, "ml100k", **options)


def simulate_shoppers(
    bootstrap: str,
    *,
    topics: Topics = Topics(),
    n_users: int = 50,
    n_events: int = 2000,
    seed: int = 0,
    rate: float | None = None,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> ReplayStats:
    """Publish the grocery catalogue (item upserts) and then simulated shopper sessions."""
    ensure_topics(bootstrap, topics)
    items = grocery_item_events(data_dir)
    shoppers = shopper_events([e.item_id for e in items], [e.categories[1] for e in items],
                              n_users=n_users, n_events=n_events, seed=seed)
    with EventProducer(bootstrap, client_id="crossrec-shoppers") as producer:
        first = publish(producer, topics.item_events, items, progress=False)
        second = publish(producer, topics.user_events, shoppers, rate=rate, progress=progress)
    return ReplayStats(sent=first.sent + second.sent, elapsed_s=first.elapsed_s + second.elapsed_s,
                       started_at=first.started_at)
