"""The creative loop on Kafka: the worker that answers creative requests, and the consumer that
feeds impressions and clicks to the bandit. Both are ``streaming.handlers.Handler`` s run by
``streaming.worker.run_consumer`` (the application layer wires streaming to generation; streaming
itself never imports generation's models and generation never imports streaming).

:class:`CreativeWorkerHandler` (creative-request topic -> creative-result topic):

- at-least-once input, idempotent output: every answered request id is recorded in a SQLite
  ledger right after the broker acknowledged its result (and so before the worker commits its
  offsets); a redelivered, answered request is counted as a duplicate and not answered again. A redelivered request that was generated but not yet recorded (the worker died
  in between) is served by the creative cache: the same asset ids, no second asset; its result
  is published again, and readers count duplicates by ``request_id``. Kafka transactions were
  tried with the embedded Tansu broker: ``init_transactions``/``send_offsets_to_transaction``/
  ``commit_transaction`` are accepted, but an aborted transaction's records are still delivered
  to ``read_committed`` consumers, so they give no exactly-once here (NOTES.md, issue 12).
- a request older than ``max_age_s`` when it comes up is answered ``expired``, not generated late;
  one whose generation fails (unknown user or item, unreadable image, full disk...) is
  dead-lettered with the reason; the worker stays up. Every request is answered or dead-lettered.
- backpressure: the consumer fetches at most ``max_batch`` requests at a time (generation is
  seconds per request), so the queue in the worker is bounded and the rest waits in Kafka as lag.

:class:`FeedbackHandler` (creative-feedback and creative-result topics -> the bandit): v2 results
register their poster variants, impressions and clicks update the arms, replays are no-ops.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from crossrec_core.errors import CrossrecError
from streaming.events import (
    CreativeAsset, CreativeClick, CreativeImpression, CreativeRequest, CreativeResult, Event, Topics,
)
from streaming.handlers import HandleResult, Handler

__all__ = [
    "WorkerConfig", "CreativeWorkerHandler", "StudioCreativeGenerator", "FeedbackHandler", "run_creative_worker",
    "poster_variant_id", "variant_asset",
]

# generate(request) -> the result to publish (status "ok"); raises to dead-letter the request
Generate = Callable[[CreativeRequest], CreativeResult]


@dataclass(frozen=True)
class WorkerConfig:
    """``state_dir`` holds the answered-request ledger (and, unless given elsewhere, the asset
    store and creative cache); ``light``: template copy and one unscored-retry poster variant
    (the burst test's "light requests"), else the language-model copy and ``variants`` posters;
    ``variants`` (None: 1 when light, else 4) poster variants per request."""

    state_dir: str
    dataset: str = "ml100k"
    max_age_s: float = 600.0
    max_batch: int = 8
    light: bool = False
    variants: int | None = None
    assets_dir: str | None = None
    cache_path: str | None = None
    profiles: str | None = None
    data_dir: str | None = None

    def __post_init__(self) -> None:
        if not self.state_dir:
            raise ValueError("state_dir is empty: the worker keeps its answered-request ledger there")
        if not self.max_age_s > 0:
            raise ValueError(f"max_age_s={self.max_age_s!r}: must be > 0 seconds")
        if not 1 <= self.max_batch <= 256:
            raise ValueError(f"max_batch={self.max_batch!r}: must be in 1..256")
        if self.variants is not None and not 1 <= self.variants <= 16:
            raise ValueError(f"variants={self.variants!r}: must be in 1..16")


class CreativeWorkerHandler(Handler):
    """Creative requests -> results; see the module docstring."""

    accepts = (CreativeRequest,)

    def __init__(self, generate: Generate, producer, topics: Topics, state_dir: str | os.PathLike, *,
                 max_age_s: float = 600.0, clock: Callable[[], float] = time.time) -> None:
        self.generate, self.producer, self.topics = generate, producer, topics
        self.max_age_s, self.clock = float(max_age_s), clock
        Path(state_dir).mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(Path(state_dir) / "answered.sqlite"), check_same_thread=False,
                                   isolation_level=None, timeout=60.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS answered (request_id TEXT PRIMARY KEY, status TEXT, "
                         "result_id TEXT, answered_at REAL)")
        self.counts = {"ok": 0, "expired": 0, "failed": 0, "duplicates": 0}

    def answered(self, request_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM answered WHERE request_id = ?", (request_id,)).fetchone() is not None

    def handle(self, events: Sequence[Event]) -> HandleResult:
        result = HandleResult()
        with self._lock:
            for ev in events:
                if self.answered(ev.event_id):
                    result.duplicates += 1
                    self.counts["duplicates"] += 1
                    continue
                age = self.clock() - ev.timestamp
                if age > self.max_age_s:
                    answer = CreativeResult(event_id=f"cres:{ev.event_id}", timestamp=self.clock(),
                                            request_id=ev.event_id, user_id=ev.user_id, item_id=ev.item_id,
                                            status="expired", error=f"request age {age:.1f}s > max_age_s={self.max_age_s:g}")
                else:
                    try:
                        answer = self.generate(ev)
                    except (CrossrecError, ValueError, KeyError, OSError) as exc:  # bad input or a full disk: DLQ
                        result.rejected.append((ev, f"generation failed: {type(exc).__name__}: {exc}"))
                        self.counts["failed"] += 1
                        continue
                # One answer at a time, acknowledged and then recorded: generation takes seconds, so
                # the round trip is cheap, and a crash can repeat only the answer in flight, not the
                # whole fetched batch (which would all come back, uncommitted, after a restart).
                self.producer.send(self.topics.creative_results, answer)
                self.producer.flush()
                self._db.execute("INSERT OR IGNORE INTO answered VALUES (?, ?, ?, ?)",
                                 (ev.event_id, answer.status, answer.event_id, self.clock()))
                self.counts[answer.status if answer.status in self.counts else "ok"] += 1
                result.applied += 1
                result.published += 1
        return result

    def flush(self) -> None:
        """Every answer is acknowledged by the broker and then recorded as it is made (a crash in
        between republishes it, counted by readers; nothing is lost): nothing is left to flush."""
        with self._lock:
            self.producer.flush()

    def close(self) -> None:
        self.flush()
        self._db.close()


def poster_variant_id(item_id: str, family: str, poster_asset: str) -> str:
    """The variant id of a poster: item, style family and the poster's asset id, so whoever
    serves the variant the bandit chose finds its file (``variant_asset``)."""
    return f"{item_id}:{family}:{poster_asset}"


def variant_asset(variant_id: str) -> str | None:
    """The poster asset id inside a variant id made by ``poster_variant_id`` (None for others)."""
    tail = variant_id.rsplit(":", 1)[-1]
    return tail if "." in tail else None


class StudioCreativeGenerator:
    """Answers a request with ``generation.studio.Studio`` (copy + scored posters, from the creative
    cache when the same (profile version, item, settings) was made before) and, when the request
    asks, a trailer. Assets go to the studio's content-addressed store. Every servable poster
    variant of the request (the chosen one first, then the others that passed the quality gate)
    is one ``poster`` asset with its variant id and family, so the bandit gets several arms per
    (user, item) and the service can show any of them."""

    def __init__(self, studio, taste: Callable[[str], object], *, trailer_seconds: float = 8.0) -> None:
        self.studio, self.taste, self.trailer_seconds = studio, taste, trailer_seconds

    def __call__(self, request: CreativeRequest) -> CreativeResult:
        item, user = str(request.item_id), str(request.user_id)
        taste = self.taste(user)
        made = self.studio.make(item, user_id=taste.user_id, liked=taste.liked, profile_version=taste.profile_version)
        poster_id = made.assets["poster.png"]
        posters = [CreativeAsset(kind="poster", asset_id=p.asset_id, variant_id=poster_variant_id(item, p.family, p.asset_id),
                                 family=p.family, score=None if p.score is None else float(p.score))
                   for p in made.posters]
        assets = [*posters, CreativeAsset(kind="copy", asset_id=made.assets["copy.json"]),
                  CreativeAsset(kind="scores", asset_id=made.assets["scores.json"])]
        if "trailer" in request.kinds:
            from crossrec.creative import make_trailer_asset

            assets.append(make_trailer_asset(self.studio, item, taste, seconds=self.trailer_seconds))
        scores = {"gate_passed": 1.0 if made.gate_passed else 0.0, "cache_hit": 1.0 if made.cache_hit else 0.0}
        if posters[0].score is not None:
            scores["total"] = posters[0].score
        return CreativeResult(event_id=f"cres:{request.event_id}", timestamp=time.time(), request_id=request.event_id,
                              user_id=request.user_id, item_id=request.item_id, status="ok", uri=f"asset:{poster_id}",
                              text=made.copy.headline, assets=assets, variant_ids=[p.variant_id for p in posters],
                              scores=scores)


class FeedbackHandler(Handler):
    """Creative feedback and v2 results -> ``generation.bandit.Bandit`` (idempotent: event ids).

    ``affinity(user_id)``: the user's category affinities now (the live profile store); a user
    the bandit has not segmented yet is segmented at their first impression (users without
    history stay cold and are looked up again at their next one). Without it, such users are cold.
    """

    accepts = (CreativeImpression, CreativeClick, CreativeResult)

    def __init__(self, bandit, affinity: Callable[[str], Mapping[str, float] | None] | None = None) -> None:
        self.bandit, self.affinity = bandit, affinity

    def _segment_new_users(self, impressions: Sequence[CreativeImpression]) -> None:
        if self.affinity is None:
            return
        new = {str(ev.user_id) for ev in impressions if not self.bandit.assigned(str(ev.user_id))}
        found = {user: a for user in sorted(new) if (a := self.affinity(user))}
        if found:
            self.bandit.assign_users(found)

    def handle(self, events: Sequence[Event]) -> HandleResult:
        from generation.bandit import Click, FeedbackError, Impression, Variant  # lazy: no numpy/sqlite at import

        result = HandleResult()
        feedback, origin = [], {}
        self._segment_new_users([ev for ev in events if isinstance(ev, CreativeImpression)])
        for ev in events:
            if isinstance(ev, CreativeResult):
                variants = [Variant(a.variant_id, str(ev.item_id), a.family or "photo",
                                    min(1.0, max(0.0, a.score if a.score is not None else 0.5)))
                            for a in ev.assets if a.kind == "poster" and a.variant_id]
                try:
                    result.applied += self.bandit.register_variants(variants)
                except FeedbackError as exc:
                    result.rejected.append((ev, str(exc)))
                continue
            if isinstance(ev, CreativeImpression):
                if self.bandit.variant(ev.variant_id) is None and ev.family in self.bandit.config.families:
                    # the result that announced it is on another topic and may come later: the
                    # impression says the variant's item and family; its quality prior stays neutral
                    self.bandit.register_variants([Variant(ev.variant_id, str(ev.item_id), ev.family, 0.5)])
                item = Impression(ev.event_id, str(ev.user_id), str(ev.item_id), ev.variant_id)
            else:
                item = Click(ev.event_id, ev.impression_id, str(ev.user_id), ev.variant_id)
            origin[id(item)] = ev
            feedback.append(item)
        if feedback:
            applied = self.bandit.apply(feedback)
            result.applied += applied.impressions + applied.clicks
            result.duplicates += applied.duplicates
            result.rejected.extend((origin[id(item)], reason) for item, reason in applied.rejected)
        return result

    def flush(self) -> None:
        self.bandit.flush()


def run_creative_worker(config: WorkerConfig, *, bootstrap: str, topics: Topics = Topics(),
                        group_id: str = "crossrec-creative", max_events: int | None = None,
                        idle_timeout_s: float | None = None, stop: threading.Event | None = None,
                        generate: Generate | None = None) -> dict:
    """Run the creative worker until stopped (SIGTERM/SIGINT, ``stop``, ``max_events`` or idle);
    returns the consumer's counters, the answers by status and the lag left."""
    from streaming.producer import EventProducer
    from streaming.worker import ConsumerConfig, run_consumer

    producer = EventProducer(bootstrap, client_id=f"{group_id}-results")
    generate = generate or _studio_generator(config)
    handler = CreativeWorkerHandler(generate, producer, topics, config.state_dir, max_age_s=config.max_age_s)
    consumer = ConsumerConfig(bootstrap=bootstrap, group_id=group_id, topics=topics, consume=("creative_requests",),
                              max_batch=config.max_batch, min_batch=1, target_batch_s=60.0, max_events=max_events,
                              idle_timeout_s=idle_timeout_s)
    try:
        stats = run_consumer(consumer, [handler], stop=stop)
    finally:
        handler.close()
        producer.close()
    return {**stats.summary(), "answers": dict(handler.counts)}


def _studio_generator(config: WorkerConfig) -> Generate:
    from crossrec.creative import ratings_store, user_taste
    from generation.assets import AssetStore
    from generation.cache import CreativeCache
    from generation.catalogue import load_catalogue
    from generation.copy import TemplateCopyWriter
    from generation.studio import Studio, StudioConfig
    from recsys.profiles import ProfileStore

    items = load_catalogue(config.dataset, config.data_dir)
    state = Path(config.state_dir)
    store = ProfileStore.open(config.profiles) if config.profiles else (
        ratings_store(config.data_dir) if config.dataset == "ml100k" else None)
    studio = Studio(items, copy_writer=TemplateCopyWriter() if config.light else None,
                    assets=AssetStore(config.assets_dir or state / "assets"),
                    cache=CreativeCache(config.cache_path or state / "cache.sqlite"),
                    config=StudioConfig(variants=config.variants or (1 if config.light else 4),
                                        attempts=1 if config.light else 2))

    def taste(user: str):
        return user_taste(config.dataset, user, items, data_dir=config.data_dir, store=store)

    return StudioCreativeGenerator(studio, taste)
