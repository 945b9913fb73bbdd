"""Schemathesis over the OpenAPI spec: no 5xx, no undocumented status, no response that breaks its
own schema, on every route (a bounded number of examples each, so it stays fast)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance, response_schema_conformance, status_code_conformance,
)

from tests.service.conftest import API_KEY, make_engine

CHECKS = [schemathesis.checks.not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
EXAMPLES = 12  # per route


@pytest.fixture(scope="module")
def schema(ml_searcher, store_path, broker, topics):
    from crossrec.service import create_app

    mp = pytest.MonkeyPatch()
    mp.setenv("CROSSREC_API_KEY", API_KEY)
    app = create_app(make_engine(store_path, {"ml100k": ml_searcher}, bootstrap=broker.bootstrap, prefix=topics.prefix))
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    mp.undo()


def test_no_server_errors_and_responses_match_the_schema(schema):
    failures, calls = [], {}
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case):
            calls[operation.label] = calls.get(operation.label, 0) + 1
            case.call_and_validate(headers={"X-API-Key": API_KEY}, checks=CHECKS)

        try:
            fuzz()
        except Exception as exc:  # collect every route's first failure, then report them together
            failures.append(f"{operation.label}: {str(exc)[:800]}")
    assert len(calls) >= 15, sorted(calls)  # every route was exercised
    assert not failures, "\n\n".join(failures)
