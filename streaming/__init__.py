"""Kafka event streams: embedded broker, typed events, producers and consumer workers.

Importing this package needs no broker and no Kafka client (both are loaded lazily).
"""

from crossrec_core.logs import drop_log_messages
from streaming.broker import Broker, BrokerConfig, BrokerError, BrokerStatus, resolve_bootstrap
from streaming.events import (
    MAX_EVENT_BYTES, SCHEMA_VERSION, CreativeRequest, CreativeResult, DeadLetter, Event, EventSchemaError, ItemEvent,
    Topics, UserEvent, decode_event,
)
from streaming.features import FeatureHandler, OnlineFeatureStore
from streaming.handlers import CreativeRequestHandler, HandleResult, Handler, ItemIndexHandler, ProfileHandler
from streaming.producer import EventProducer, ensure_topics
from streaming.replay import (
    ReplayStats, movielens_events, publish, publish_parallel, replay_movielens, simulate_shoppers,
)
from streaming.source import Delivery, EventSource, KafkaEventSource, MemoryEventSource
from streaming.worker import ConsumerConfig, ConsumerStats, HandlerFactory, WorkerPool, run_consumer, run_workers

__all__ = [
    "Broker", "BrokerConfig", "BrokerError", "BrokerStatus", "resolve_bootstrap",
    "MAX_EVENT_BYTES", "SCHEMA_VERSION", "Event", "UserEvent", "ItemEvent", "CreativeRequest", "CreativeResult",
    "DeadLetter", "EventSchemaError", "Topics", "decode_event",
    "Handler", "HandleResult", "ProfileHandler", "ItemIndexHandler", "CreativeRequestHandler", "FeatureHandler",
    "OnlineFeatureStore",
    "EventProducer", "ensure_topics",
    "ReplayStats", "movielens_events", "publish", "publish_parallel", "replay_movielens", "simulate_shoppers",
    "Delivery", "EventSource", "KafkaEventSource", "MemoryEventSource",
    "ConsumerConfig", "ConsumerStats", "HandlerFactory", "WorkerPool", "run_consumer", "run_workers",
]

# kafka-python's IO loop warns when one step of its tasks takes over 0.1 s of wall time. In one
# process that publishes (the demo's replay encodes 20,000 events in Python) while a consumer
# thread applies events, a step most likely waits that long for the GIL (0.14 s seen once in a
# 20,000-event replay at load 1.5, 0.6 s on a loaded first run): no loop is blocked and nothing times out, but each prints a screen-wide warning.
# The threshold cannot be passed through KafkaProducer/KafkaConsumer (unknown configs are
# refused), so only that line is dropped; the selector's other warnings stay.
drop_log_messages("kafka.net.selector", r"Task .* ran for [\d.]+s \(>")
