"""The composition root: the one place that builds stream consumers and their handlers.

``streaming`` transports events (consumer loop, worker pool, producers) and knows nothing of
where profiles live or which recommender runs; this module opens those parts and hands them to it.
The CLI (``crossrec stream consume``), the demo, the stream benchmark and the service stack call
it, so a change in what a worker applies is made here once.

- :class:`ProfileWiring`: what a user-event worker applies (profile store, optional online item
  counters, optional recommender publishing creative requests), as paths: picklable, so spawned
  worker processes open their own copies (``profile_worker``).
- :func:`user_event_handlers`: the same handlers over parts already open (the demo, tests).
- :func:`consume_stream`: ``crossrec stream consume``; :func:`run_feedback_consumer`: ``crossrec
  creative feedback`` (impressions and clicks into the bandit, :func:`open_feedback_bandit`);
  :func:`service_stack`: broker + consumer (+ creative worker and feedback consumer) + service
  processes for ``serve-bench`` and ``demo --serve``.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

from crossrec_core.errors import CrossrecError
from streaming.events import Topics
from streaming.handlers import Handler
from streaming.worker import ConsumerConfig, ConsumerStats, HandlerFactory

__all__ = [
    "ProfileWiring", "user_event_handlers", "open_user_event_handlers", "profile_worker", "item_index_handler",
    "consume_stream", "open_feedback_bandit", "run_feedback_consumer", "RunningService", "creative_loop_commands",
    "service_stack",
]


@dataclass(frozen=True)
class ProfileWiring:
    """A user-event worker's parts by path: the profile store (SQLite) at ``store_path``; with
    ``features_path`` online item counters; with ``recommender_dir`` (a saved recsys recommender)
    creative requests for items newly in a user's top ``creative_k``."""

    store_path: str
    features_path: str | None = None
    recommender_dir: str | None = None
    creative_k: int = 5

    def __post_init__(self) -> None:
        if not self.store_path:
            raise ValueError("store_path is empty: worker processes need a profile store path")
        if self.creative_k < 1:
            raise ValueError(f"creative_k={self.creative_k!r}: at least one recommendation per user is required")


def user_event_handlers(store, *, features=None, recommender=None, producer=None, topics: Topics | None = None,
                        creative_k: int = 5) -> list[Handler]:
    """Handlers of user events over open parts, in the order they must run: profiles first, then
    online counters, then creative requests (which rank with the new events). ``recommender``
    needs ``producer`` and ``topics``."""
    from streaming.features import FeatureHandler
    from streaming.handlers import CreativeRequestHandler, ProfileHandler

    handlers: list[Handler] = [ProfileHandler(store)]
    if features is not None:
        handlers.append(FeatureHandler(features))
    if recommender is not None:
        if producer is None or topics is None:
            raise ValueError("recommender given without producer and topics: creative requests need both")
        handlers.append(CreativeRequestHandler(recommender, producer, topics, k=creative_k))
    return handlers


def open_user_event_handlers(wiring: ProfileWiring, consumer: ConsumerConfig) -> tuple[list[Handler], Callable[[], None]]:
    """Open ``wiring``'s stores (and recommender) and build their handlers for ``consumer``'s
    cluster and topics. Users are keyed to partitions, so each worker process re-ranks only its
    own users. Returns the handlers and a close function."""
    from recsys import load_recommender
    from recsys.profiles import ProfileStore

    from streaming.features import OnlineFeatureStore
    from streaming.producer import EventProducer

    store = ProfileStore(wiring.store_path)
    features = OnlineFeatureStore(wiring.features_path) if wiring.features_path else None
    producer = recommender = None
    if wiring.recommender_dir:
        producer = EventProducer(consumer.bootstrap, client_id=f"{consumer.group_id}-creative")
        recommender = load_recommender(wiring.recommender_dir, profiles=store)
    handlers = user_event_handlers(store, features=features, recommender=recommender, producer=producer,
                                   topics=consumer.topics, creative_k=wiring.creative_k)

    def close() -> None:
        if producer is not None:
            producer.close()
        for part in (features, store):
            if part is not None:
                part.close()

    return handlers, close


def profile_worker(wiring: ProfileWiring, consumer: ConsumerConfig) -> HandlerFactory:
    """The handler factory a ``streaming.WorkerPool`` runs in each process (picklable)."""
    return functools.partial(open_user_event_handlers, wiring, consumer)


def item_index_handler(index_dir: str | os.PathLike, embedder_dir: str | os.PathLike | None, store) -> Handler:
    """Item events into the FAISS index kept in ``index_dir`` (created on first use; new items
    embedded with ``retrieval.load_item_embedder(embedder_dir)``; vectors also put in ``store``)."""
    from retrieval import load_item_embedder
    from retrieval.index import FaissIndex, create_index
    from streaming.handlers import ItemIndexHandler

    index_dir = Path(index_dir)
    embedder = load_item_embedder(embedder_dir)
    # the fingerprint check refuses an index built by another embedding model
    if (index_dir / "index").is_dir():
        index = FaissIndex.load(index_dir / "index", expected_fingerprint=embedder.fingerprint)
    else:
        index = create_index(embedder.dim, expected_size=10_000, kind="flat", fingerprint=embedder.fingerprint)
    return ItemIndexHandler(index, embedder, state_dir=index_dir, profile_store=store)


def consume_stream(config: ConsumerConfig, wiring: ProfileWiring, *, workers: int = 1,
                   index_dir: str | os.PathLike | None = None,
                   embedder_dir: str | os.PathLike | None = None) -> ConsumerStats:
    """The library function behind ``crossrec stream consume``.

    ``workers`` processes of ``config.group_id`` share the user events, each with ``wiring``'s
    handlers. ``index_dir``: item events also go into the FAISS index kept there. With one worker
    that happens in the same consumer; with several, the index has a single writer: a consumer
    group of its own (``<group_id>-items``) in this process, next to the worker pool.
    """
    from recsys.profiles import ProfileStore
    from streaming.worker import WorkerPool, run_consumer, run_workers

    if workers == 1:
        handlers, close = open_user_event_handlers(wiring, config)
        if index_dir is not None:
            handlers.append(item_index_handler(index_dir, embedder_dir, handlers[0].store))
            if "item_events" not in config.consume:
                config = replace(config, consume=(*config.consume, "item_events"))
        try:
            return run_consumer(config, handlers)
        finally:
            close()
    if index_dir is None:
        return run_workers(config, workers, profile_worker(wiring, config))
    pool = WorkerPool(config, workers, profile_worker(wiring, config))  # before the index consumer blocks
    store = ProfileStore(wiring.store_path)  # new items' vectors reach the workers through the shared file
    try:
        items = run_consumer(replace(config, group_id=f"{config.group_id}-items", consume=("item_events",)),
                             [item_index_handler(index_dir, embedder_dir, store)])
    finally:
        store.close()
    from streaming.worker import merge_stats

    return merge_stats([pool.join(), items])


# -- the creative feedback loop ---------------------------------------------------------------


def _store_affinity(store) -> Callable[[str], dict]:
    """``user id -> category affinity`` from a live profile store ({} for unknown or non-numeric ids)."""

    def affinity(user_id: str) -> dict:
        try:
            profile = store.get(int(user_id))
        except ValueError:
            return {}
        return dict(profile.category_affinity) if profile is not None else {}

    return affinity


def open_feedback_bandit(bandit_dir: str | os.PathLike, store=None, *, n_segments: int | None = None):
    """The bandit kept in ``bandit_dir``: reopened when it exists, else created with a
    ``Segmenter`` fitted (k-means) on the category affinities of every user of ``store`` (an open
    ``ProfileStore``), each of them assigned to their segment. ``n_segments``: k of the k-means
    when creating (default ``BanditConfig.n_segments``, 10; users without history form one more,
    cold segment); reopening keeps the saved count (a different ``n_segments`` is refused)."""
    from generation.bandit import Bandit, BanditConfig, Segmenter

    bandit_dir = Path(bandit_dir)
    if (bandit_dir / "config.json").is_file():
        bandit = Bandit.open(bandit_dir)
        if n_segments is not None and n_segments != bandit.config.n_segments:
            bandit.close()
            raise CrossrecError(f"n_segments={n_segments}: the bandit in {str(bandit_dir)!r} was created with "
                                f"{bandit.config.n_segments} segments (segments are fixed when a bandit is created)")
        return bandit
    if store is None:
        raise CrossrecError(f"bandit_dir={str(bandit_dir)!r} holds no bandit: creating one needs the profile store "
                            "(its users' category affinities define the segments)")
    config = BanditConfig() if n_segments is None else BanditConfig(n_segments=n_segments)
    affinity = _store_affinity(store)
    users = {str(u): a for u in store.users() if (a := affinity(str(u)))}
    if len(users) < config.n_segments:
        raise CrossrecError(f"n_segments={config.n_segments}: the profile store at {store.path} has only {len(users)} "
                            "user(s) with category affinities; apply events first or create with fewer segments")
    segmenter = Segmenter.fit(list(users.values()), config.n_segments, seed=config.seed)
    bandit = Bandit.create(bandit_dir, config, segmenter)
    bandit.assign_users(users)
    bandit.flush()
    return bandit


def run_feedback_consumer(bootstrap: str, bandit_dir: str | os.PathLike, *, store_path: str | os.PathLike | None = None,
                          n_segments: int | None = None, topics: Topics = Topics(),
                          group_id: str = "crossrec-feedback", idle_timeout_s: float | None = None,
                          max_events: int | None = None, stop=None) -> dict:
    """``crossrec creative feedback``: a consumer group on the creative-feedback and
    creative-result topics applying impressions, clicks and announced poster variants to the
    bandit in ``bandit_dir`` (:func:`open_feedback_bandit`; ``store_path``: the live profile
    store, which also segments users first seen later). The service reads the same directory and
    reopens the bandit when its files change. Runs until stopped (SIGTERM/SIGINT, ``stop``,
    ``max_events`` or ``idle_timeout_s``); returns the consumer's counters and the bandit's summary."""
    from crossrec.creative_worker import FeedbackHandler
    from recsys.profiles import ProfileStore
    from streaming.worker import run_consumer

    store = ProfileStore.open(store_path) if store_path is not None else None
    try:
        bandit = open_feedback_bandit(bandit_dir, store, n_segments=n_segments)
        try:
            handler = FeedbackHandler(bandit, affinity=_store_affinity(store) if store is not None else None)
            config = ConsumerConfig(bootstrap=bootstrap, group_id=group_id, topics=topics,
                                    consume=("creative_feedback", "creative_results"), max_batch=500, min_batch=1,
                                    idle_timeout_s=idle_timeout_s, max_events=max_events)
            stats = run_consumer(config, [handler], stop=stop)
            return {**stats.summary(), "bandit": bandit.describe()}
        finally:
            bandit.close()
    finally:
        if store is not None:
            store.close()


# -- the service stack ------------------------------------------------------------------------


@dataclass(frozen=True)
class RunningService:
    url: str
    api_key: str
    bootstrap: str
    work_dir: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, timeout_s: float, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CrossrecError(f"the service exited with {proc.returncode} while starting; see {log}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    raise CrossrecError(f"the service was not ready within {timeout_s:.0f} s; see {log}")


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def creative_loop_commands(config, *, store: Path, work: Path, bootstrap: str, topic_prefix: str) -> dict[str, list[str]]:
    """The ``crossrec`` argument lists of the processes that close the creative loop behind a
    service configured with ``config.creative_cache``: a creative worker answering the service's
    creative requests into that cache and ``config.assets_dir`` (state in ``work/creative-worker``,
    taste from the live ``store``), and with ``config.bandit_dir`` a feedback consumer applying the
    service's impressions and clicks (and the worker's results) to that bandit, created from
    ``store`` on first start. Empty without ``creative_cache``."""
    if not config.creative_cache:
        return {}
    if config.ranking_catalogue not in ("ml100k", "grocery"):
        raise CrossrecError(f"ranking_catalogue={config.ranking_catalogue!r}: the creative worker makes creatives "
                            "for 'ml100k' or 'grocery' only; leave creative_cache unset for a catalogue folder")
    connection = ["--bootstrap", bootstrap, "--prefix", topic_prefix]
    worker = ["creative", "worker", *connection, "--dataset", config.ranking_catalogue, "--state",
              str(work / "creative-worker"), "--profiles", str(store), "--creative-cache", config.creative_cache]
    if config.assets_dir:
        worker += ["--assets-dir", config.assets_dir]
    if config.data_dir:
        worker += ["--data-dir", config.data_dir]
    commands = {"creative-worker": worker}
    if config.bandit_dir:
        commands["creative-feedback"] = ["creative", "feedback", *connection, "--bandit", config.bandit_dir,
                                         "--store", str(store)]
    return commands


@contextmanager
def service_stack(config, *, store: Path, work: Path, workers: int, port: int = 0, topic_prefix: str = "crossrec",
                  start_timeout_s: float = 900.0, echo: Callable[[str], None] = print) -> Iterator[RunningService]:
    """The embedded broker (in-memory log), a stream consumer process applying user events to
    ``store`` and the service (a ``crossrec.service.ServiceConfig``; ``workers`` processes reading
    ``store``); with ``config.creative_cache`` (and ``bandit_dir``) also a creative worker (and a
    feedback consumer) process (:func:`creative_loop_commands`), so creatives the service
    requests are made and the bandit it reads learns from its impressions and clicks; everything
    is stopped on exit. Logs go to ``work``."""
    from crossrec.service.config import ENV_API_KEY
    from streaming.broker import Broker, BrokerConfig
    from streaming.producer import ensure_topics

    key = os.environ.get(ENV_API_KEY) or "local-" + os.urandom(8).hex()
    broker = Broker(BrokerConfig(data_dir=str(work / "broker"), kafka_port=0, storage="memory"))
    procs: list[subprocess.Popen] = []
    server = None
    port = port or _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, ENV_API_KEY: key, "OPENBLAS_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "crossrec.cli"]

    def start(args: list[str], log: str) -> subprocess.Popen:
        proc = subprocess.Popen(args, env=env, stdout=open(work / log, "w"), stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    try:
        broker.start()
        ensure_topics(broker.bootstrap, Topics(prefix=topic_prefix))
        connection = ["--bootstrap", broker.bootstrap, "--topic-prefix", topic_prefix]
        # the consume command's default fetch wait (100 ms): a 20 ms wait made the idle consumer and the broker
        # answer 50 fetches a second, CPU the service's workers need, for no visible gain on a page
        start([*cli, "stream", "consume", *connection, "--store", str(store)], "consumer.log")
        for name, args in creative_loop_commands(config, store=store, work=work, bootstrap=broker.bootstrap,
                                                 topic_prefix=topic_prefix).items():
            start([*cli, *args], f"{name}.log")
        serve = [*cli, "serve", "--port", str(port), "--workers", str(workers), *connection, "--profile-store",
                 str(store), "--torch-threads", str(config.torch_threads), "--catalogues", *config.catalogues,
                 "--recommend-cache", str(config.recommend_cache), "--search-cache", str(config.search_cache)]
        for flag, value in (("--data-dir", config.data_dir), ("--ranker-dir", config.ranker_dir),
                            ("--creatives-dir", config.creatives_dir), ("--reports-dir", config.reports_dir),
                            ("--bandit", config.bandit_dir), ("--creative-cache", config.creative_cache),
                            ("--assets-dir", config.assets_dir)):
            if value:
                serve += [flag, value]
        server = start(serve, "server.log")
        started = time.perf_counter()
        echo(f"  starting the service ({workers} worker(s); models load once per worker) ...")
        _wait_ready(url, server, start_timeout_s, work / "server.log")
        echo(f"  service ready in {time.perf_counter() - started:.0f} s at {url}")
        yield RunningService(url, key, broker.bootstrap, work)
    finally:
        for proc in reversed(procs):
            _stop(proc)
        broker.stop()
