"""The request-metrics middleware (plain ASGI): latency per route template, errors per status."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from prometheus_client import generate_latest

from crossrec.service import metrics


def _sample(text: str, name: str, labels: str) -> float:
    prefix = f"{name}{{{labels}}} "
    return sum(float(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix))


def test_latency_per_route_template_and_errors_per_status():
    app = FastAPI()
    app.add_middleware(metrics.RequestMetrics)

    @app.get("/things/{thing_id}")
    async def thing(thing_id: int):
        if thing_id == 0:
            raise HTTPException(404, "no thing 0")
        return {"thing_id": thing_id}

    route = 'method="GET",route="/things/{thing_id}"'
    before = generate_latest().decode()
    with TestClient(app) as client:
        assert client.get("/things/1").json() == {"thing_id": 1}
        assert client.get("/things/2").status_code == 200
        assert client.get("/things/0").status_code == 404
        assert client.get("/things/x").status_code == 422
        assert client.get("/nowhere").status_code == 404
    after = generate_latest().decode()
    count = lambda text, labels: _sample(text, "crossrec_request_seconds_count", labels)  # noqa: E731
    errors = lambda text, status: _sample(text, "crossrec_request_errors_total", f'{route},status="{status}"')  # noqa: E731
    assert count(after, route) - count(before, route) == 4  # by template, not by raw path
    assert errors(after, "404") - errors(before, "404") == 1
    assert errors(after, "422") - errors(before, "422") == 1
    unmatched = 'method="GET",route="unmatched"'
    assert count(after, unmatched) - count(before, unmatched) == 1
