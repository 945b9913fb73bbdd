"""The engine as an HTTP service: FastAPI app, web page, metrics, load benchmark.

Importing this package loads no model; ``ServiceEngine.load`` does, once per process.
"""

from crossrec.service.app import create_app, create_app_from_env
from crossrec.service.config import ServiceConfig
from crossrec.service.engine import ServiceEngine
from crossrec.service.publisher import BrokerUnavailableError, EventPublisher

__all__ = ["ServiceConfig", "ServiceEngine", "EventPublisher", "BrokerUnavailableError", "create_app",
           "create_app_from_env"]
