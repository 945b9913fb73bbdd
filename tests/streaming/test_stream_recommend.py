"""Clicks through Kafka change the user's next recommendations and publish creative requests."""

import time

import pytest

from recsys import ALSRecommender, ProfileStore
from recsys.data import catalogue_from_dataset
from streaming.events import CreativeRequest, UserEvent
from streaming.handlers import CreativeRequestHandler, ProfileHandler
from streaming.producer import EventProducer
from streaming.source import KafkaEventSource
from streaming.worker import ConsumerConfig, run_consumer

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def recommender():
    from crossrec_datasets import load_movielens, open_dataset

    ml = load_movielens()
    catalogue = catalogue_from_dataset(open_dataset("ml100k"))
    return ALSRecommender(catalogue, ProfileStore()).fit(ml.ratings.sort("timestamp").head(20_000))


def test_clicks_change_recommendations_and_request_creatives(broker, topics, recommender):
    user, other = 1, 2
    before = recommender.recommend(user, 10).item_ids.tolist()
    # Click what another user would be recommended and this one was not.
    clicks = [i for i in recommender.recommend(other, 30).item_ids.tolist() if i not in before][:8]
    events = [UserEvent(event_id=f"click-{user}-{i}", timestamp=2e9 + n, user_id=user, item_id=i, kind="click")
              for n, i in enumerate(clicks)]
    with EventProducer(broker.bootstrap) as producer:
        producer.send_many(topics.user_events, events)
    with EventProducer(broker.bootstrap) as requests:
        handlers = [ProfileHandler(recommender.profiles), CreativeRequestHandler(recommender, requests, topics, k=5)]
        config = ConsumerConfig(bootstrap=broker.bootstrap, topics=topics, group_id="rec", consume=("user_events",),
                                idle_timeout_s=3.0)
        stats = run_consumer(config, handlers)
    assert stats.applied == len(events)
    after = recommender.recommend(user, 10).item_ids.tolist()
    assert after != before and not set(clicks) & set(after)

    source = KafkaEventSource(broker.bootstrap, [topics.creative_requests], "creative-reader")
    got, deadline = [], time.monotonic() + 20
    try:
        while len(got) < stats.published and time.monotonic() < deadline:
            got.extend(source.poll(0.5, 100))
    finally:
        source.close()
    published = [d.event for d in got]
    assert stats.published >= 5 and len(published) == stats.published
    assert all(isinstance(e, CreativeRequest) and e.user_id == user for e in published)
    # After the last batch the handler saw the final top 5: every one of them was requested.
    assert set(after[:5]) <= {e.item_id for e in published} and all(e.rank < 5 for e in published)
    assert len({e.event_id for e in published}) == len(published)  # one request per (user, item)
