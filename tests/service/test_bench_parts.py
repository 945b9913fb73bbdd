"""The benches' parts that need no models: the request mix, the in-process ASGI call, and the CPU
accounting of the service workers (read from /proc, found by the line each worker logs)."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from fastapi import FastAPI

from crossrec.service.bench import _asgi_request, _cpu_seconds, _worker_pids, bench_request
from crossrec_core.errors import CrossrecError


def test_request_mix():
    users = {bench_request("recommend", i)[1] for i in range(943)}
    assert len(users) == 943  # every ml100k user once before any repeats
    assert bench_request("recommend", 0) == ("GET", "/users/1/recommendations", {"params": {"k": 10}})
    repeated = {bench_request("search", i)[2]["params"]["q"] for i in range(400)}
    new = [bench_request("search_new", i, "grocery")[2]["params"]["q"] for i in range(400)]
    assert len(repeated) == 20 and len(set(new)) == 400
    assert bench_request("search", 3, "ml100k")[1] == "/catalogues/ml100k/search"
    with pytest.raises(CrossrecError, match="route='events'"):
        bench_request("events", 0)


def test_asgi_request_reaches_the_app_with_its_query():
    app = FastAPI()

    @app.get("/echo/{n}")
    async def echo(n: int, q: str):
        return {"n": n, "q": q}

    assert asyncio.run(_asgi_request(app, "GET", "/echo/3", {"q": "oat milk"})) == (200, b'{"n":3,"q":"oat milk"}')
    assert asyncio.run(_asgi_request(app, "GET", "/echo/x", {"q": "a"}))[0] == 422


def test_worker_cpu_from_the_server_log(tmp_path):
    log = tmp_path / "server.log"
    log.write_text(f"INFO start\ncrossrec worker {os.getpid()}: models loaded in 3.1 s (load average 1.0)\n"
                   "crossrec worker 999999999: models loaded in 3.0 s (load average 1.0)\n")
    pids = _worker_pids(log)
    assert pids == sorted([os.getpid(), 999_999_999])
    before = _cpu_seconds(pids)  # the second pid does not exist: it counts 0
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    assert _cpu_seconds(pids) - before >= 0.2
    assert _worker_pids(tmp_path / "missing.log") == []
