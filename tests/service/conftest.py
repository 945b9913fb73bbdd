"""Fixtures: a service over small real data, a real embedded broker and a live consumer.

Grocery: 4 real products with a tiny aligned model trained here (image search works); MovieLens:
the whole item catalogue (lexical search, posters) and an ALS recommender fitted on the ratings
of the first 60 users. Models live in a tmp ``CROSSREC_HOME``.
"""

from __future__ import annotations

import os
import threading

import polars as pl
import pytest
import torch

API_KEY = "test-key-0123456789"
N_PRODUCTS = 4


@pytest.fixture(scope="session", autouse=True)
def _tmp_home(tmp_path_factory):
    torch.set_num_threads(1)  # as in a service worker; the machine is shared
    home = tmp_path_factory.mktemp("crossrec-home")
    old = os.environ.get("CROSSREC_HOME")
    os.environ["CROSSREC_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("CROSSREC_HOME", None)
    else:
        os.environ["CROSSREC_HOME"] = old


@pytest.fixture(scope="session")
def grocery():
    from crossrec_datasets import load_grocery

    return load_grocery()


@pytest.fixture(scope="session")
def grocery_searcher():
    """A Searcher over 4 real products: lexical + MiniLM signals and an untrained toy-size aligned
    model (image search runs end to end; the tests check the service, not the model's quality)."""
    from retrieval.align.embedder import ItemEmbedder
    from retrieval.align.model import AlignConfig, AlignedModel
    from retrieval.encoders import MobileNetV2Encoder, load_encoder
    from retrieval.searcher import CatalogueItems, Searcher, load_catalogue_items

    items = load_catalogue_items("grocery")
    rows = list(range(0, len(items), len(items) // N_PRODUCTS))[:N_PRODUCTS]
    small = CatalogueItems(ids=[items.ids[r] for r in rows], titles=[items.titles[r] for r in rows],
                           texts=[items.texts[r] for r in rows], images=[items.images[r] for r in rows],
                           facets={k: v[rows] for k, v in items.facets.items()},
                           aligned_texts=[items.aligned_texts[r] for r in rows])
    torch.manual_seed(0)
    model = AlignedModel(AlignConfig(embed_dim=32, adapter_hidden=16, fusion_heads=2, trainable_stages=0))
    text_enc = load_encoder("minilm")
    return Searcher(small, embedder=ItemEmbedder(model, text_enc, MobileNetV2Encoder()),
                    text_encoders={"minilm": (text_enc, text_enc)}, use_cache=False)


@pytest.fixture(scope="session")
def movielens():
    from crossrec_datasets import load_movielens

    return load_movielens()


@pytest.fixture(scope="session")
def ml_searcher():
    from retrieval.searcher import Searcher, load_catalogue_items

    return Searcher(load_catalogue_items("ml100k"), use_cache=False)  # lexical signals only


@pytest.fixture(scope="session")
def store_path(tmp_path_factory, movielens):
    """A live profile store file holding the first 60 users' ratings (what a consumer had applied)."""
    from crossrec_datasets import open_dataset
    from recsys.candidates import ALSConfig, ALSRecommender, ALSTrainingConfig
    from recsys.data import catalogue_from_dataset
    from recsys.profiles import ProfileStore

    path = tmp_path_factory.mktemp("store") / "profiles.db"
    with ProfileStore(path) as store:
        als = ALSRecommender(catalogue_from_dataset(open_dataset("ml100k")), store, ALSConfig(factors=16),
                             ALSTrainingConfig(iterations=5))
        als.fit(movielens.ratings.filter(pl.col("user_id") <= 60))
        als.save_pretrained(path.parent / "als")
    return path


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    from streaming.broker import Broker, BrokerConfig

    with Broker(BrokerConfig(data_dir=str(tmp_path_factory.mktemp("broker")), kafka_port=0, storage="memory")) as running:
        yield running


@pytest.fixture(scope="session")
def topics(broker):
    from streaming.events import Topics
    from streaming.producer import ensure_topics

    names = Topics(prefix=f"svc{os.getpid()}", partitions=2)
    ensure_topics(broker.bootstrap, names)
    return names


def make_engine(store_path, searchers, *, bootstrap=None, prefix="crossrec", creatives_dir=None, reports_dir=None,
                timeout_s=10.0):
    from crossrec.service import ServiceConfig, ServiceEngine
    from recsys.registry import load_recommender
    from recsys.profiles import ProfileStore

    config = ServiceConfig(catalogues=tuple(searchers), ranking_catalogue="ml100k", bootstrap=bootstrap,
                           topic_prefix=prefix, publish_timeout_s=timeout_s, max_upload_bytes=2 * 1024 * 1024,
                           max_image_pixels=4_000_000, creatives_dir=creatives_dir, reports_dir=reports_dir)
    rec = load_recommender(store_path.parent / "als", profiles=ProfileStore.open(store_path))
    return ServiceEngine(config, searchers, rec, known_users=set(range(1, 944)))


@pytest.fixture(scope="session")
def consumer(broker, topics, store_path, movielens):
    """A stream consumer applying user events to the live store, as in production."""
    from recsys.profiles import ProfileStore
    from streaming.handlers import ProfileHandler
    from streaming.worker import ConsumerConfig, run_consumer

    store = ProfileStore.open(store_path)
    stop, ready = threading.Event(), threading.Event()
    config = ConsumerConfig(bootstrap=broker.bootstrap, topics=topics, group_id="svc-test", consume=("user_events",),
                            fetch_max_wait_ms=20, poll_timeout_s=0.05)
    thread = threading.Thread(target=run_consumer, args=(config, [ProfileHandler(store)]),
                              kwargs={"stop": stop, "on_ready": ready.set}, daemon=True)
    thread.start()
    assert ready.wait(60), "the consumer got no partitions"
    yield store
    stop.set()
    thread.join(30)
    store.close()
