"""``crossrec demo``: the main job of a fresh machine, end to end on embedded defaults.

Steps, each reusing what exists (trained models are kept under ``$CROSSREC_HOME/models``):
1. the aligned grocery model (trained unless present), then cross-media catalogue search;
2. the aligned MovieLens poster/overview model (the ranker's item features);
3. the ranking engine (candidates + TorchRec ranker) on MovieLens 100K;
4. the embedded Kafka broker: MovieLens ratings streamed into a live profile store, a click that
   changes one user's recommendations, and a new catalogue item that becomes searchable; the
   broker is stopped (also on errors and Ctrl-C);
5. creatives for a few users of the live store (copy, poster variants, one trailer:
   ``crossrec.demo_creatives``), reused from the creative cache on later runs;
6. a summary: ``summary.json`` and ``report.html``.
"""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from collections import Counter
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from crossrec.demo_creatives import DemoCreative, DemoTrailer
from crossrec.demo_report import write_html_report

__all__ = [
    "DemoOptions", "StepResult", "NamedHit", "SearchExample", "StreamFigures", "RankedItem", "RecommendationChange",
    "NewItemSearch", "NewItem", "GROCERY_NEW_ITEM", "DemoReport", "run_demo", "serve_demo", "ranker_dir",
]

TEXT_QUERY = "sweet yellow fruit"
DEMO_EVENTS, QUICK_EVENTS = 20_000, 5_000
# The upserted product is new to the grocery catalogue (whose ids are 0..80).
NEW_ITEM_ID = 9001
NEW_ITEM_TEXT = ("Yellow Dragon Fruit: a tropical cactus fruit with bright yellow, scaly skin and sweet, "
                 "juicy white flesh full of small black seeds.")
NEW_ITEM_QUERY = "yellow dragon fruit"
_TOP_K = 10
_ASSIGN_TIMEOUT_S, _CONSUME_TIMEOUT_S = 120.0, 900.0
# The demo's aligned-model training when it has to train (a first run): fewer epochs and one
# augmented view instead of four, so a fresh 2-core machine finishes in minutes. Validation
# accuracy plateaus early on grocery (about 0.77 from epoch 7 of 30 with the full defaults).
# The evaluation commands (`crossrec retrieval train/eval`) keep the full defaults, and
# `crossrec demo --full-training` uses them too; training_config.json records which was used.
DEMO_ALIGN_EPOCHS, DEMO_ALIGN_VIEWS = 8, 1
# MovieLens overviews are long, so their augmented text variants cost minutes to encode on a
# first run (six per overview by default); the demo encodes two. Grocery's 81 descriptions keep six.
DEMO_TEXT_VIEWS = {"ml100k": 2}


def ranker_dir() -> Path:
    """Where the demo keeps the ranking engine: the one ``crossrec recommend`` reads by default."""
    from recsys.training import default_engine_dir

    return default_engine_dir("ml100k")


@dataclass(frozen=True)
class DemoOptions:
    """What ``run_demo`` does. ``events``/``user_id`` None pick the defaults (20,000 ratings, 5,000
    with ``quick``; a user with a median-size history in the replayed slice)."""

    data_dir: str | None = None
    out_dir: str = "runs/demo"
    quick: bool = False  # fewer events, 1 ranker epoch and 2 alignment epochs when training
    # aligned models trained with the evaluation commands' full defaults instead of DEMO_ALIGN_TRAINING
    full_training: bool = False
    retrain: bool = False  # train every model again even when one exists
    events: int | None = None
    user_id: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.out_dir, str) or not self.out_dir.strip():
            raise ValueError(f"out_dir={self.out_dir!r}: give a folder path (default runs/demo)")
        if self.data_dir is not None and (not isinstance(self.data_dir, str) or not Path(self.data_dir).expanduser().is_dir()):
            raise FileNotFoundError(f"data_dir={self.data_dir!r} is not a directory (a folder holding grocery-store/ "
                                    "and ml100k-posters/)")
        if self.quick and self.full_training:
            raise ValueError("quick=True and full_training=True: pick one (quick trains 2 alignment epochs, "
                             "full_training the evaluation defaults)")
        for name in ("events", "user_id"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name}={value!r}: must be a positive integer or None (the default)")

    @property
    def n_events(self) -> int:
        return self.events or (QUICK_EVENTS if self.quick else DEMO_EVENTS)


@dataclass(frozen=True)
class NewItem:
    """The catalogue item the demo upserts through the stream, and the query that should find it."""

    item_id: int
    text: str
    categories: tuple[str, ...]
    query: str


GROCERY_NEW_ITEM = NewItem(NEW_ITEM_ID, NEW_ITEM_TEXT, ("Fruit", "Dragon fruit"), NEW_ITEM_QUERY)


@dataclass(frozen=True)
class StepResult:
    name: str
    seconds: float
    note: str  # "trained", "reused ...", or what the step showed


@dataclass(frozen=True)
class NamedHit:
    item_id: int
    name: str
    score: float


@dataclass(frozen=True)
class SearchExample:
    """One cross-media query; ``target_rank`` (1-based) of the photo's own product, None if not in the hits."""

    query: str
    space: str
    hits: tuple[NamedHit, ...]
    target_id: int | None = None
    target_name: str | None = None
    target_rank: int | None = None


@dataclass(frozen=True)
class StreamFigures:
    """The MovieLens replay through Kafka into the profile store."""

    published: int
    publish_events_per_s: float
    consumed: int
    applied: int
    duplicates: int
    end_to_end_events_per_s: float  # first publish -> last event applied
    p50_ms: float | None  # producer send -> applied
    p99_ms: float | None
    lag: int
    dlq: int
    dlq_reasons: dict[str, int]
    users: int


@dataclass(frozen=True)
class RankedItem:
    item_id: int
    title: str
    score: float
    sources: tuple[str, ...]


@dataclass(frozen=True)
class RecommendationChange:
    """One user's top-k before and after a click consumed through Kafka."""

    user_id: int
    history_before: int
    clicked_item: int
    clicked_title: str
    before: tuple[RankedItem, ...]
    after: tuple[RankedItem, ...]
    added: tuple[int, ...]
    removed: tuple[int, ...]


@dataclass(frozen=True)
class NewItemSearch:
    """A catalogue upsert consumed from Kafka: its rank for ``query`` before and after (None: absent)."""

    item_id: int
    query: str
    rank_before: int | None
    rank_after: int | None
    hits_after: tuple[NamedHit, ...]


@dataclass(frozen=True)
class DemoReport:
    steps: tuple[StepResult, ...]
    searches: tuple[SearchExample, ...]
    stream: StreamFigures
    change: RecommendationChange
    new_item: NewItemSearch
    outputs: dict[str, str] = field(default_factory=dict)
    total_seconds: float = 0.0
    creatives: tuple[DemoCreative, ...] = ()
    trailer: DemoTrailer | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)

    def summary(self) -> str:
        """The closing summary printed by ``crossrec demo``."""
        lines = ["", "=== crossrec demo: summary ==="]
        width = max(len(s.name) for s in self.steps) if self.steps else 5
        lines += [f"  {s.name:<{width}s} {s.seconds:7.1f} s  {s.note}" for s in self.steps]
        lines.append(f"  {'total':<{width}s} {self.total_seconds:7.1f} s")
        for s in self.searches:
            found = "" if s.target_id is None else (f"; own product {s.target_name!r} at rank {s.target_rank}"
                                                    if s.target_rank else f"; own product {s.target_name!r} not in top {len(s.hits)}")
            query = repr(s.query) if s.target_id is None else f"photo {Path(s.query).name}"
            lines.append(f"  search {query} -> {s.space}: top-1 {s.hits[0].name!r}{found}" if s.hits else
                         f"  search {query} -> {s.space}: no hits")
        st = self.stream
        lines.append(f"  stream: {st.published} events published at {st.publish_events_per_s:.0f}/s, {st.applied} applied "
                     f"({st.end_to_end_events_per_s:.0f}/s end to end, p50 {_ms(st.p50_ms)}, p99 {_ms(st.p99_ms)}), "
                     f"lag {st.lag}, DLQ {st.dlq} {st.dlq_reasons or ''}".rstrip())
        c = self.change
        lines.append(f"  click: user {c.user_id} clicked {c.clicked_item} ({c.clicked_title}): {len(c.added)} new items in "
                     f"the top {len(c.after)}, {len(c.removed)} dropped")
        n = self.new_item
        lines.append(f"  new item {n.item_id}: rank for {n.query!r} {n.rank_before or 'absent'} -> {n.rank_after or 'absent'}")
        if self.creatives:
            hits = sum(c.cache_hit for c in self.creatives)
            lines.append(f"  creatives: {len(self.creatives)} for users {sorted({c.user_id for c in self.creatives})} "
                         f"({hits} from the cache, {sum(c.gate_passed for c in self.creatives)} passed the quality gate, "
                         f"{self.creatives[0].copy_source} copy)")
        if self.trailer is not None:
            lines.append(f"  trailer: user {self.trailer.user_id}, item {self.trailer.item_id} ({self.trailer.title}): "
                         f"{self.trailer.path}")
        lines += [f"  {name}: {path}" for name, path in self.outputs.items()]
        return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"


class _Steps:
    """Times the demo's ``total`` steps and prints their progress."""

    def __init__(self, echo: Callable[[str], None], total: int) -> None:
        self.echo, self.total, self.done = echo, total, []

    @contextmanager
    def step(self, name: str) -> Iterator[list[str]]:
        self.echo(f"\n[{len(self.done) + 1}/{self.total}] {name}")
        note: list[str] = []
        start = time.perf_counter()
        yield note
        self.done.append(StepResult(name, time.perf_counter() - start, "; ".join(note)))


# -- steps 1-3: models ---------------------------------------------------------------------------

def _ensure_aligned(dataset: str, options: DemoOptions, echo) -> tuple[bool, str]:
    """Train the aligned model of ``dataset`` unless it exists; (trained now, note)."""
    from retrieval.align.embedder import default_model_dir
    from retrieval.align.model import AlignTrainingConfig
    from retrieval.pipeline import train_retrieval

    model_dir = default_model_dir(dataset)
    if (model_dir / "config.json").is_file() and not options.retrain:
        echo(f"  reusing the trained model in {model_dir} (--retrain trains it again)")
        return False, f"reused {model_dir}"
    if options.full_training:
        training = None
    elif options.quick:
        training = AlignTrainingConfig(epochs=2)
    else:
        text_views = DEMO_TEXT_VIEWS.get(dataset, AlignTrainingConfig.text_views)
        training = AlignTrainingConfig(epochs=DEMO_ALIGN_EPOCHS, image_views=DEMO_ALIGN_VIEWS, text_views=text_views)
    settings = AlignTrainingConfig() if training is None else training
    echo(f"  training the aligned image/text model on {dataset} into {model_dir} ({settings.epochs} epochs, "
         f"{settings.image_views} augmented view(s){' + mirror' if settings.mirror_view else ''}, "
         f"{settings.text_views} text variant(s)"
         f"{'' if options.full_training else '; --full-training: the evaluation defaults'}) ...")
    s = train_retrieval(dataset, data_dir=options.data_dir, training=training, progress=options.progress)
    acc = "n/a" if s.val_i2t_acc1 is None else f"{s.val_i2t_acc1:.3f}"
    echo(f"  trained in {s.seconds:.0f} s (best epoch {s.best_epoch}, val image->text Acc@1 {acc}); "
         f"{s.items_indexed} catalogue items indexed")
    return True, f"trained (val i2t Acc@1 {acc}, {s.items_indexed} items indexed)"


def _search_examples(options: DemoOptions, echo) -> tuple[SearchExample, ...]:
    from crossrec_datasets import load_grocery
    from retrieval.searcher import Searcher

    grocery = load_grocery(options.data_dir)
    names = {p.class_id: p.name for p in grocery.products}
    searcher = Searcher.load("grocery", data_dir=options.data_dir)  # loaded once for both queries

    def named(result) -> tuple[NamedHit, ...]:
        return tuple(NamedHit(h.item_id, names.get(h.item_id, h.title), h.score) for h in result.hits)

    text = SearchExample(TEXT_QUERY, "item", named(searcher.search(TEXT_QUERY, k=5)))
    test = grocery.split("test")
    photo = test[len(test) // 2]  # a fixed test photo: the demo shows the same query every run
    hits = named(searcher.search_image(photo.path, k=5, space="text"))
    rank = next((r for r, h in enumerate(hits, 1) if h.item_id == photo.class_id), None)
    image = SearchExample(str(photo.path), "text", hits, photo.class_id, names[photo.class_id], rank)
    for ex, shown in ((text, repr(TEXT_QUERY)), (image, f"shop photo {photo.path.name}")):
        echo(f"  {shown} -> catalogue {ex.space}s:")
        for r, h in enumerate(ex.hits, 1):
            mark = "  <- the photo's own product" if h.item_id == ex.target_id else ""
            echo(f"    {r}. {h.name:<40s} {h.score:6.3f}{mark}")
    echo(f"  shop photo of {image.target_name!r}: own product "
         + (f"found at rank {rank}" if rank else "not in the top 5"))
    return text, image


def _ensure_ranker(options: DemoOptions, echo, features_changed: bool) -> str:
    """Train the ranking engine unless it exists and its item features (the MovieLens aligned
    model) were not retrained in this run."""
    from recsys.engine import EngineConfig, EngineTrainingConfig
    from recsys.training import train_engine
    from retrieval.align.embedder import default_model_dir

    out = ranker_dir()
    if (out / "config.json").is_file() and not options.retrain and not features_changed:
        echo(f"  reusing the ranking engine in {out} (--retrain trains it again)")
        return f"reused {out}"
    training = EngineTrainingConfig(epochs=1) if options.quick else EngineTrainingConfig()
    echo(f"  training candidates (ALS, BPR, ANN, popularity) and the TorchRec ranker ({training.epochs} epoch(s)) "
         f"into {out} ...")
    engine = train_engine(out, EngineConfig(), training, "ml100k", data_dir=options.data_dir,
                          embedder_dir=str(default_model_dir("ml100k")), progress=options.progress)
    s = engine.train_stats
    echo(f"  ranker: {s.samples} samples at {s.samples_per_s:.0f}/s, final loss {s.final_loss:.4f}")
    return f"trained ({s.samples} samples, loss {s.final_loss:.4f})"


# -- step 4: streams -----------------------------------------------------------------------------

def _reset_stream_outputs(out: Path) -> None:
    """A clean broker, profile store and item index for this run (stopping a broker a previous,
    interrupted demo left on the same folder)."""
    from streaming.broker import Broker, BrokerConfig

    stale = Broker(BrokerConfig(data_dir=str(out / "broker")))
    if stale.status().running:
        stale.stop()
    for path in (out / "broker", out / "item-index"):
        shutil.rmtree(path, ignore_errors=True)
    for suffix in ("", "-wal", "-shm"):
        (out / f"profiles.db{suffix}").unlink(missing_ok=True)


def _replay(bootstrap: str, topics, store, options: DemoOptions, echo,
            dataset: str = "ml100k") -> tuple[StreamFigures, list]:
    """Publish the first ``options.n_events`` interactions of ``dataset`` (and one malformed
    message, to show the dead-letter topic) while one consumer applies them to ``store``."""
    from crossrec_core.errors import CrossrecError
    from crossrec.wiring import user_event_handlers
    from streaming import ConsumerConfig, EventProducer, publish, run_consumer
    from streaming.replay import dataset_events

    events = dataset_events(dataset, options.data_dir, options.n_events)
    config = ConsumerConfig(bootstrap=bootstrap, topics=topics, group_id="crossrec-demo", consume=("user_events",),
                            max_events=len(events) + 1)
    ready, halt, outcome = threading.Event(), threading.Event(), {}

    def consume() -> None:
        try:
            outcome["stats"] = run_consumer(config, user_event_handlers(store), stop=halt, on_ready=ready.set)
        except BaseException as exc:  # re-raised in the main thread
            outcome["error"] = exc
            ready.set()

    thread = threading.Thread(target=consume, name="demo-consumer", daemon=True)
    thread.start()
    try:
        echo("  waiting for the consumer group to assign partitions ...")
        if not ready.wait(_ASSIGN_TIMEOUT_S):
            raise CrossrecError(f"the consumer group got no partitions within {_ASSIGN_TIMEOUT_S:.0f} s")
        if "error" in outcome:
            raise outcome["error"]
        echo(f"  publishing the first {len(events)} {dataset} interactions (by time) while the consumer applies them ...")
        with EventProducer(bootstrap, client_id="crossrec-demo") as producer:
            sent = publish(producer, topics.user_events, events, progress=options.progress)
            producer.send_raw(topics.user_events, b"demo", b"{this is not an event")
        thread.join(_CONSUME_TIMEOUT_S)
    finally:
        halt.set()  # ends the consumer early only on errors, Ctrl-C or the timeout
        thread.join()
    if "error" in outcome:
        raise outcome["error"]
    stats = outcome["stats"]
    if stats.consumed < len(events) + 1:
        raise CrossrecError(f"the consumer stopped after {stats.consumed} of {len(events) + 1} messages "
                           f"within {_CONSUME_TIMEOUT_S:.0f} s")
    span = (stats.last_applied_at or sent.started_at) - sent.started_at
    figures = StreamFigures(
        published=sent.sent, publish_events_per_s=sent.events_per_s, consumed=stats.consumed, applied=stats.applied,
        duplicates=stats.duplicates, end_to_end_events_per_s=stats.consumed / span if span > 0 else 0.0,
        p50_ms=stats.percentile_ms(50), p99_ms=stats.percentile_ms(99), lag=stats.lag, dlq=stats.dlq,
        dlq_reasons=dict(stats.dlq_reasons), users=len({e.user_id for e in events}))
    echo(f"  published {sent.sent} events in {sent.elapsed_s:.1f} s ({sent.events_per_s:.0f}/s); consumed {stats.consumed} "
         f"({figures.end_to_end_events_per_s:.0f}/s end to end), applied {stats.applied}, duplicates {stats.duplicates}")
    echo(f"  latency send->applied p50 {_ms(figures.p50_ms)}, p99 {_ms(figures.p99_ms)}; lag {stats.lag}; "
         f"DLQ {stats.dlq} {dict(stats.dlq_reasons)} (one malformed message was sent on purpose); "
         f"{figures.users} users in the slice")
    return figures, events


def _pick_user(events: list, user_id: int | None) -> int:
    """The given user, else one with a median-size history in the replayed slice."""
    if user_id is not None:
        return user_id
    counts = sorted(Counter(e.user_id for e in events).items(), key=lambda kv: (kv[1], kv[0]))
    return counts[len(counts) // 2][0]


def _ranked(engine, rec) -> tuple[RankedItem, ...]:
    titles, pos = engine.catalogue.titles, engine.catalogue.positions(rec.item_ids)
    return tuple(RankedItem(int(i), titles[p], float(s), tuple(src))
                 for i, s, p, src in zip(rec.item_ids, rec.scores, pos, rec.sources))


def _print_list(echo, title: str, items: tuple[RankedItem, ...], marks: dict[int, str]) -> None:
    echo(f"  {title}")
    for r, it in enumerate(items, 1):
        echo(f"    {r:2d}. {it.item_id:5d} {it.score:7.3f}  {it.title[:48]:<48s} via {'+'.join(it.sources)}"
             f"{marks.get(it.item_id, '')}")


def _new_item_hits(catalogue, new: NewItem) -> tuple[tuple[NamedHit, ...], int | None]:
    """Top-5 fused catalogue items for ``new.query`` and the new item's rank (None: absent)."""
    hits = catalogue.search_text(new.query, k=5, space="fused")
    meta = lambda h: h.metadata or {}  # noqa: E731
    named = tuple(NamedHit(h.item_id, meta(h).get("name") or meta(h).get("title") or meta(h).get("text", "")[:28], h.score)
                  for h in hits)
    return named, next((r for r, h in enumerate(named, 1) if h.item_id == new.item_id), None)


def _click_and_upsert(broker, topics, store, engine, catalogue, user: int, last_ts: float, out: Path,
                      stop: threading.Event, echo, new: NewItem = GROCERY_NEW_ITEM) -> tuple[RecommendationChange, NewItemSearch]:
    """Recommend, publish a click on the top item and a new catalogue item, consume both, recommend
    and search again."""
    from crossrec_core.errors import CrossrecError
    from crossrec.wiring import user_event_handlers
    from streaming import ConsumerConfig, EventProducer, ItemEvent, ItemIndexHandler, UserEvent, run_consumer

    profile = store.get(user)
    history = 0 if profile is None else profile.n_events
    rec = engine.recommend(user, k=_TOP_K)
    before = _ranked(engine, rec)
    echo(f"\n  user {user} ({history} events in the live profile store): {rec.reason}")
    _print_list(echo, f"top {_TOP_K} before the click:", before, {})
    if not before:
        raise CrossrecError(f"user {user} got no recommendations; nothing to click")
    clicked = before[0]
    _, rank_before = _new_item_hits(catalogue, new)
    ts = last_ts + 60.0  # event time just after the replayed slice
    click = UserEvent(event_id=f"demo-click:{user}:{clicked.item_id}:{ts:.0f}", timestamp=ts, user_id=user,
                      item_id=clicked.item_id, kind="click")
    upsert = ItemEvent(event_id=f"demo-item:{new.item_id}:{ts:.0f}", timestamp=ts, item_id=new.item_id, op="upsert",
                       text=new.text, categories=list(new.categories))
    echo(f"\n  publishing a click of user {user} on {clicked.item_id} ({clicked.title}) and an upsert of a new "
         f"catalogue item {new.item_id} ...")
    with EventProducer(broker.bootstrap, client_id="crossrec-demo") as producer:
        producer.send(topics.user_events, click, sent_at=time.time())
        producer.send(topics.item_events, upsert, sent_at=time.time())
    index_handler = ItemIndexHandler(catalogue.indexes["fused"], catalogue.embedder, state_dir=out / "item-index")
    config = ConsumerConfig(bootstrap=broker.bootstrap, topics=topics, group_id="crossrec-demo",
                            consume=("user_events", "item_events"), idle_timeout_s=2.0)
    live = run_consumer(config, [*user_event_handlers(store), index_handler], stop=stop)
    if stop.is_set():  # SIGINT/SIGTERM while the consumer ran: it stopped early, so must the demo
        raise KeyboardInterrupt("the demo was stopped by a signal")
    echo(f"  consumed {live.consumed} events (applied {live.applied}, DLQ {live.dlq})")

    after = _ranked(engine, engine.recommend(user, k=_TOP_K))
    ids_before, ids_after = [i.item_id for i in before], [i.item_id for i in after]
    added = tuple(i for i in ids_after if i not in ids_before)
    removed = tuple(i for i in ids_before if i not in ids_after)
    marks = {i: "  (new)" if i in added else f"  (was {ids_before.index(i) + 1})"
             for r, i in enumerate(ids_after) if i in added or ids_before.index(i) != r}
    _print_list(echo, f"top {_TOP_K} after the click:", after, marks)
    echo(f"  changed: {len(added)} new, {len(removed)} dropped {list(removed)} (the clicked item is now seen and "
         "excluded; the profile vector and history moved)")
    hits, rank_after = _new_item_hits(catalogue, new)
    echo(f"\n  search {new.query!r} in the catalogue after the upsert:")
    for r, h in enumerate(hits, 1):
        echo(f"    {r}. {h.name[:28]:<28s} {h.score:6.3f}{'  <- new item from the stream' if h.item_id == new.item_id else ''}")
    return (RecommendationChange(user, history, clicked.item_id, clicked.title, before, after, added, removed),
            NewItemSearch(new.item_id, new.query, rank_before, rank_after, hits))


def _streaming_step(options: DemoOptions, out: Path, live: ExitStack, stop: threading.Event, echo, note: list[str]):
    """Step 4; also returns the live store and the engine over it, open until ``live`` closes."""
    from crossrec_datasets import open_dataset
    from recsys.data import users_from_dataset
    from retrieval import CatalogueSearch, load_item_embedder
    from retrieval.align.embedder import default_model_dir
    from retrieval.pipeline import catalogue_dir

    _reset_stream_outputs(out)
    users = users_from_dataset(open_dataset("ml100k", data_dir=options.data_dir))
    grocery_dir = default_model_dir("grocery")
    catalogue = CatalogueSearch.load(catalogue_dir(grocery_dir), load_item_embedder(grocery_dir))
    store, engine = live.enter_context(_live_engine(users, ranker_dir(), out))
    return (*_stream_click_upsert(store, engine, catalogue, options, out, stop, echo, note), store, engine)


@contextmanager
def _live_engine(users, engine_dir: Path, out: Path) -> Iterator[tuple]:
    """The live profile store ``out/profiles.db`` (with ``users``' demographics) and the ranking
    engine reading it; the store is closed on exit."""
    from recsys import ProfileStore, RankingEngine

    store = ProfileStore(out / "profiles.db")
    try:
        store.set_demographics_many(users.demographics)
        yield store, RankingEngine.from_pretrained(engine_dir, profiles=store, users=users)
    finally:
        store.close()


def _stream_click_upsert(store, engine, catalogue, options: DemoOptions, out: Path, stop: threading.Event,
                         echo, note: list[str], *, dataset: str = "ml100k", new: NewItem = GROCERY_NEW_ITEM):
    """The streaming part shared by the named and the folder demo, on the live ``store`` and the
    ``engine`` reading it: the embedded broker, the replay of ``dataset``, then a click and the
    upsert of ``new``."""
    from streaming import Broker, BrokerConfig, Topics, ensure_topics

    broker = Broker(BrokerConfig(data_dir=str(out / "broker"), kafka_port=0, s3_port=0))
    try:
        echo(f"  starting the embedded broker (Tansu + SeaweedFS) in {out / 'broker'} ...")
        broker.start()
        echo(f"  broker up at {broker.bootstrap}")
        topics = Topics(prefix="crossrec-demo")
        ensure_topics(broker.bootstrap, topics)
        figures, events = _replay(broker.bootstrap, topics, store, options, echo, dataset=dataset)
        change, new_item = _click_and_upsert(broker, topics, store, engine, catalogue, _pick_user(events, options.user_id),
                                             max(e.timestamp for e in events), out, stop, echo, new)
    finally:
        echo("  stopping the broker ...")
        broker.stop()
    note.append(f"{figures.applied} events applied, DLQ {figures.dlq}, {len(change.added)} new recs after the click, "
                f"new item rank {new_item.rank_after or 'absent'}")
    return figures, change, new_item


def _creatives_step(store, engine, change: RecommendationChange, options: DemoOptions, out: Path, echo,
                    note: list[str]) -> tuple[tuple[DemoCreative, ...], DemoTrailer | None]:
    """Step 5: creatives for the demo's user (their top items after the click) and the users with
    the longest histories in the live store, and one trailer (see ``crossrec.demo_creatives``)."""
    from crossrec.demo_creatives import (
        DEMO_CREATIVE_ITEMS, DEMO_CREATIVE_USERS, DEMO_POSTER_VARIANTS, creative_picks, creative_state_dir, demo_studio,
        make_demo_creatives,
    )

    echo(f"  {DEMO_CREATIVE_USERS} users x their top {DEMO_CREATIVE_ITEMS} recommendations, with the demo's lighter "
         f"settings: template copy and {DEMO_POSTER_VARIANTS} poster variants in one round (`crossrec creative` "
         "writes copy with the local language model, about 11 s of CPU each, and retries a round when no variant "
         "passes the quality gate); a first run takes about 50 s of CPU, later runs copy them out of the cache "
         "in about 2 s")
    picks = creative_picks((change.user_id, [i.item_id for i in change.after]),
                           lambda user, k: engine.recommend(user, k=k).item_ids,
                           [(u, store.user_version(u)) for u in store.users()])
    state = creative_state_dir(out)
    echo(f"  creative cache and asset store: {state} (the ones `crossrec demo --serve` serves)")
    creatives, trailer = make_demo_creatives(picks, store, out / "creatives", demo_studio(state, options.data_dir),
                                             echo=echo)
    note.append(f"{len(creatives)} creatives ({sum(c.cache_hit for c in creatives)} from the cache)"
                + ("" if trailer is None else f", trailer {'reused' if trailer.reused else 'rendered'}"))
    return creatives, trailer


@contextmanager
def _signals_stop(stop: threading.Event) -> Iterator[None]:
    """SIGTERM ends the demo like Ctrl-C (so the broker is stopped); the consumer loop turns both
    into ``stop`` while it runs, which the demo then checks."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(*_) -> None:
        stop.set()
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_demo(options: DemoOptions = DemoOptions(), echo: Callable[[str], None] = print) -> DemoReport:
    """Run the whole demo (see the module docstring), printing progress through ``echo``; writes
    ``<out_dir>/summary.json`` and returns the figures."""
    from crossrec_datasets import resolve_data_dir
    from retrieval.align.embedder import default_model_dir
    from crossrec_core.persist import atomic_write_text

    data_root = resolve_data_dir(options.data_dir)  # fails early, naming the options, when there is no data
    out = Path(options.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    echo(f"crossrec demo: data {data_root}, models {default_model_dir('grocery').parent}, outputs {out}"
         + (" (quick)" if options.quick else ""))
    steps = _Steps(echo, 6)
    stop = threading.Event()
    with _signals_stop(stop), ExitStack() as live:
        with steps.step("retrieval: grocery model + search") as note:
            note.append(_ensure_aligned("grocery", options, echo)[1])
            searches = _search_examples(options, echo)
        with steps.step("retrieval: MovieLens posters") as note:
            features_changed, text = _ensure_aligned("ml100k", options, echo)
            note.append(text)
        with steps.step("ranking: candidates + ranker") as note:
            note.append(_ensure_ranker(options, echo, features_changed))
        with steps.step("streaming: Kafka events") as note:
            stream, change, new_item, store, engine = _streaming_step(options, out, live, stop, echo, note)
        with steps.step("creatives: copy, posters, trailer") as note:
            creatives, trailer = _creatives_step(store, engine, change, options, out, echo, note)
    with steps.step("summary") as note:
        outputs = {"grocery model": str(default_model_dir("grocery")), "poster model": str(default_model_dir("ml100k")),
                   "ranking engine": str(ranker_dir()), "profile store": str(out / "profiles.db"),
                   "item index": str(out / "item-index"), "broker log": str(out / "broker"),
                   "creatives": str(out / "creatives"), "summary": str(out / "summary.json"),
                   "report": str(out / "report.html")}
        note.append(f"written to {out / 'summary.json'} and {out / 'report.html'}")
    report = DemoReport(tuple(steps.done), searches, stream, change, new_item, outputs, time.perf_counter() - start,
                        creatives, trailer)
    atomic_write_text(out / "summary.json", report.to_json())
    write_html_report(report, out)
    return report


def serve_demo(options: DemoOptions, port: int = 8000, echo: Callable[[str], None] = print) -> None:
    """After ``run_demo``: the service and its page on the demo's live profile store, with a fresh
    broker and a consumer so clicks on the page change the recommendations, and the creative loop
    (a creative worker answering the page's creative requests, a feedback consumer training the
    bandit that picks each user's poster variant from the page's impressions and clicks; state in
    ``<out>/service/creatives``); runs until Ctrl-C."""
    from crossrec.demo_creatives import creative_state_dir
    from crossrec.service import ServiceConfig
    from crossrec.wiring import service_stack

    out = Path(options.out_dir)
    work = out / "service"
    work.mkdir(parents=True, exist_ok=True)
    creatives = creative_state_dir(out)  # holds the demo's own creatives (step 5): served at once
    config = ServiceConfig(data_dir=options.data_dir, ranker_dir=str(ranker_dir()), reports_dir="runs",
                           creative_cache=str(creatives / "cache.sqlite"), assets_dir=str(creatives / "assets"),
                           bandit_dir=str(creatives / "bandit"), creatives_dir=str(out / "creatives"))
    with service_stack(config, store=out / "profiles.db", work=work, workers=1, port=port, echo=echo) as running:
        echo(f"\n  the page: {running.url}/   API docs: {running.url}/docs   API key for clicks: {running.api_key}")
        echo("  Ctrl-C stops the service, the consumer and the broker")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            echo("  stopping ...")
