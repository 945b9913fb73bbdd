"""``crossrec demo --dataset FOLDER``: the main job on a user's own data folder (README "Your data").

Steps, each reusing what exists under ``$CROSSREC_HOME/models`` (``crossclip-<name>``,
``ranker-<name>``): the aligned model trained on the folder's catalogue (light settings), search by
text and by one of its photos; the ranking engine on its interactions; the folder's interactions
replayed through the embedded Kafka broker into a live profile store, a click that changes one
user's recommendations and a new item that becomes searchable; a summary (JSON + HTML report).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

from crossrec.demo import (
    DemoOptions, DemoReport, NamedHit, NewItem, SearchExample, _live_engine, _reset_stream_outputs, _signals_stop,
    _Steps, _stream_click_upsert,
)
from crossrec.demo_report import write_html_report

__all__ = ["run_folder_demo"]

# Light alignment settings: a folder demo should take minutes on a CPU (README "Your data" trains in full)
_LIGHT = {"image_views": 0, "mirror_view": False, "text_views": 0}


def _ensure_aligned(folder: str, options: DemoOptions, echo) -> str:
    from retrieval.align.embedder import default_model_dir
    from retrieval.align.model import AlignTrainingConfig
    from retrieval.pipeline import train_retrieval

    model_dir = default_model_dir(Path(folder).expanduser().resolve().name)
    if (model_dir / "config.json").is_file() and not options.retrain:
        echo(f"  reusing the aligned model in {model_dir} (--retrain trains it again)")
        return f"reused {model_dir}"
    training = AlignTrainingConfig(**_LIGHT, epochs=2 if options.quick else 10)
    echo(f"  training the aligned image/text model on your catalogue ({training.epochs} epochs, light settings) into {model_dir} ...")
    s = train_retrieval(folder, training=training, progress=options.progress)
    echo(f"  trained in {s.seconds:.0f} s; {s.items_indexed} items indexed ({s.images_skipped} images skipped)")
    return f"trained ({s.items_indexed} items indexed)"


def _search_examples(ds, echo) -> tuple[SearchExample, ...]:
    from retrieval.searcher import Searcher

    searcher = Searcher.load(str(ds.root), encoders=("minilm",))
    cat = ds.catalogue().select("item_id", "title", "image").collect()
    middle = cat.row(cat.height // 2, named=True)
    query = " ".join(str(middle["title"]).split()[-2:])  # the item's kind, e.g. "tote bag"
    named = lambda result: tuple(NamedHit(h.item_id, h.title, h.score) for h in result.hits)  # noqa: E731
    examples = [SearchExample(query, "item", named(searcher.search(query, k=5)))]
    photos = ds.photos()
    pictures = (photos.collect() if photos is not None else cat).drop_nulls("image")
    if pictures.height:
        pick = pictures.row(pictures.height // 2, named=True)
        hits = named(searcher.search_image(pick["image"], k=5, space="text"))
        rank = next((r for r, h in enumerate(hits, 1) if h.item_id == pick["item_id"]), None)
        title = cat.filter(cat["item_id"] == pick["item_id"])["title"].to_list()
        examples.append(SearchExample(pick["image"], "text", hits, pick["item_id"], title[0] if title else "", rank))
    for ex in examples:
        echo(f"  {ex.query!r} -> catalogue {ex.space}s:" if ex.target_id is None else
             f"  photo {Path(ex.query).name} of {ex.target_name!r} -> catalogue texts (own item at rank {ex.target_rank or '> 5'}):")
        for r, h in enumerate(ex.hits, 1):
            echo(f"    {r}. {h.item_id}  {h.name[:40]:<40s} {h.score:6.3f}")
    return tuple(examples)


def _ensure_ranker(folder: str, options: DemoOptions, echo, out: Path) -> str:
    from recsys.engine import EngineConfig, EngineTrainingConfig
    from recsys.training import train_engine

    if (out / "config.json").is_file() and not options.retrain:
        echo(f"  reusing the ranking engine in {out} (--retrain trains it again)")
        return f"reused {out}"
    echo(f"  training candidates and the ranker (1 epoch, 1 model: light settings) into {out} ...")
    engine = train_engine(out, EngineConfig(n_models=1), EngineTrainingConfig(epochs=1), folder, progress=options.progress)
    return f"trained ({engine.train_stats.samples} samples)"


def _streaming_step(ds, options: DemoOptions, out: Path, engine_dir: Path, stop: threading.Event, echo, note: list[str]):
    from recsys.data import users_from_dataset
    from retrieval import CatalogueSearch, load_item_embedder
    from retrieval.align.embedder import default_model_dir
    from retrieval.pipeline import catalogue_dir

    _reset_stream_outputs(out)
    users = users_from_dataset(ds, ds.users_map)
    model_dir = default_model_dir(ds.name)
    catalogue = CatalogueSearch.load(catalogue_dir(model_dir), load_item_embedder(model_dir))
    titles = ds.catalogue().select("title").collect()["title"].to_list()
    new = NewItem(int(len(ds.items)) + 10_000, f"New arrival: {titles[0]}, a limited edition of our best seller",
                  (), "new arrival limited edition")
    with _live_engine(users, engine_dir, out) as (store, engine):
        return _stream_click_upsert(store, engine, catalogue, options, out, stop, echo, note, dataset=str(ds.root),
                                    new=new)


def run_folder_demo(folder: str, options: DemoOptions = DemoOptions(), echo: Callable[[str], None] = print) -> DemoReport:
    """The demo on ``folder`` (see the module docstring); writes ``<out_dir>/summary.json`` and
    ``report.html`` and returns the figures."""
    from crossrec_core.persist import atomic_write_text
    from crossrec_datasets import open_dataset
    from recsys.training import default_engine_dir
    from retrieval.align.embedder import default_model_dir

    ds = open_dataset(folder)
    out = Path(options.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    engine_dir = default_engine_dir(folder)
    start = time.perf_counter()
    echo(f"crossrec demo on your folder {ds.root}: models {engine_dir.parent}, outputs {out}")
    steps = _Steps(echo, 4)
    stop = threading.Event()
    with _signals_stop(stop):
        with steps.step("retrieval: your catalogue's model + search") as note:
            note.append(_ensure_aligned(folder, options, echo))
            searches = _search_examples(ds, echo)
        with steps.step("ranking: candidates + ranker") as note:
            note.append(_ensure_ranker(folder, options, echo, engine_dir))
        with steps.step("streaming: your interactions through Kafka") as note:
            stream, change, new_item = _streaming_step(ds, options, out, engine_dir, stop, echo, note)
    with steps.step("summary") as note:
        outputs = {"aligned model": str(default_model_dir(ds.name)), "ranking engine": str(engine_dir),
                   "profile store": str(out / "profiles.db"), "item index": str(out / "item-index"),
                   "broker log": str(out / "broker"), "summary": str(out / "summary.json"), "report": str(out / "report.html")}
        note.append(f"written to {out / 'summary.json'} and {out / 'report.html'}")
    report = DemoReport(tuple(steps.done), searches, stream, change, new_item, outputs, time.perf_counter() - start)
    atomic_write_text(out / "summary.json", report.to_json())
    write_html_report(report, out)
    return report
