"""Fixtures: one real embedded broker (Tansu + SeaweedFS) per test session, fresh topics per test."""

from __future__ import annotations

import itertools
import os

import pytest

from streaming.broker import Broker, BrokerConfig
from streaming.events import Topics
from streaming.producer import ensure_topics

_counter = itertools.count()


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """A running broker on free loopback ports; stopped at the end of the session."""
    with Broker(BrokerConfig(data_dir=str(tmp_path_factory.mktemp("broker")), kafka_port=0, s3_port=0)) as running:
        yield running


@pytest.fixture
def topics(broker) -> Topics:
    """Topic names no other test uses (created, 4 partitions)."""
    names = Topics(prefix=f"t{os.getpid()}x{next(_counter)}", partitions=4)
    ensure_topics(broker.bootstrap, names)
    return names


@pytest.fixture(scope="session")
def ml_events():
    """The first 2,000 MovieLens ratings (by time) as user events."""
    from streaming.replay import movielens_events

    return movielens_events(limit=2000)
