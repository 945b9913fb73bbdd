"""The benches' parts that need no models: the request mix, the in-process ASGI call, and the CPU
accounting of the service workers (read from /proc, found by the line each worker logs)."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from fastapi import FastAPI, HTTPException

from crossrec.service.bench import _asgi_request, _cpu_seconds, _recommend_cache_counts, _worker_pids, bench_request
from crossrec_core.errors import CrossrecError


def test_request_mix():
    users = {bench_request("recommend", i)[1] for i in range(943)}
    assert len(users) == 943  # every ml100k user once before any repeats
    assert bench_request("recommend", 0) == ("GET", "/users/1/recommendations", {"params": {"k": 10}})
    repeated = {bench_request("search", i)[2]["params"]["q"] for i in range(400)}
    new = [bench_request("search_new", i, "grocery")[2]["params"]["q"] for i in range(8000)]
    assert len(repeated) == 20 and len(set(new)) == 8000  # a 60 s run at 100 req/s sends 6,000
    assert bench_request("recommend_again", 5) == bench_request("recommend", 5)
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


def test_open_loop_client_against_a_real_server():
    import socket
    import threading

    import uvicorn

    from crossrec.service.bench import open_loop

    app = FastAPI()

    @app.get("/items/{n}")
    async def item(n: int, q: str = ""):
        if n == 0:
            raise HTTPException(404, "no item 0")
        return {"n": n, "q": q, "pad": "x" * 3000}

    @app.post("/events")
    async def events(body: dict):
        return {"accepted": len(body)}

    from fastapi.responses import PlainTextResponse
    from prometheus_client import CollectorRegistry, Counter, generate_latest

    registry = CollectorRegistry()  # the service's counter, as /metrics renders it
    cache = Counter("crossrec_recommend_cache_total", "kept recommendations", ["result"], registry=registry)
    cache.labels("hit").inc(3)
    cache.labels("miss").inc(7)

    @app.get("/metrics")
    async def prometheus():
        return PlainTextResponse(generate_latest(registry))

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_keep_alive=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        routes = {"get": (40.0, lambda i: ("GET", f"/items/{i % 5}", {"params": {"q": f"oat milk {i}"}})),
                  "post": (20.0, lambda i: ("POST", "/events", {"headers": {"X-API-Key": "k"}, "json": {"a": i, "b": [1]}}))}
        first = asyncio.run(open_loop(f"http://127.0.0.1:{port}", routes, 1.0, 5.0))
        time.sleep(1.5)  # idle connections closed by the server (keep-alive 1 s): the client reconnects
        again = asyncio.run(open_loop(f"http://127.0.0.1:{port}", routes, 1.0, 5.0))
        for results in (first, again):
            assert len(results["get"]) == 40 and len(results["post"]) == 20
            assert [good for _, good in results["get"]].count(False) == 8  # the 404s (item 0) are failures
            assert all(good for _, good in results["post"])
            assert all(0 <= ms < 5000 for ms, _ in results["get"] + results["post"])
        assert _recommend_cache_counts(f"http://127.0.0.1:{port}") == (3.0, 7.0)
        closed = asyncio.run(open_loop("http://127.0.0.1:1", {"get": (5.0, lambda i: ("GET", "/", {}))}, 0.4, 1.0))
        assert [good for _, good in closed["get"]] == [False, False]  # nothing listening: failures, no exception
    finally:
        server.should_exit = True
        thread.join(10)
