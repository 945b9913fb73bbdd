"""``crossrec serve-bench``: open-loop load on the running service, from a second process.

The bench starts the embedded broker (in-memory log), a stream consumer process on a copy of the
engine's profile store and the service (N uvicorn workers, one torch thread each, reading that
store), then sends recommend and text-search requests at fixed rates from an asyncio client in
this process, plus a trickle of click events. Arrivals are scheduled (open loop): a request is
sent at its time whatever the previous ones are doing, and its latency is counted from that
time, so a stalled server shows in the percentiles instead of slowing the load down.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from crossrec.service.config import ServiceConfig
from crossrec_core.errors import CrossrecError

__all__ = ["BenchOptions", "RouteFigures", "run_serve_bench", "open_loop", "run_cpu_bench", "bench_request"]

P99_TARGET_MS = 100.0
WARM_UP = 20  # requests per route before the CPU bench measures
QUERIES = {
    "grocery": ["sweet yellow fruit", "green apple", "milk", "orange juice", "red pepper", "natural yoghurt",
                "mushrooms", "oat milk", "lemon", "tomato", "melon", "potato", "avocado", "pear", "sour cream",
                "banana", "garlic", "ginger", "cucumber", "soy milk"],
    "ml100k": ["space adventure", "romantic comedy", "a detective in los angeles", "toy story", "war film",
               "animated musical", "horror in a hotel", "science fiction robots", "mafia family", "western"],
}


# ml100k users are 1..943; a stride coprime with 943 visits every user once before repeating.
N_USERS, USER_STRIDE = 943, 37


def bench_request(route: str, i: int, catalogue: str = "grocery") -> tuple[str, str, dict]:
    """The ``i``-th request (method, path, httpx kwargs) of a read route both benches send:
    ``recommend`` (k=10 for user 1 + 37 i mod 943: every user once per 943 requests),
    ``recommend_again`` (the same requests: sent after ``recommend``, each asks for a user asked
    before), ``search`` (the catalogue's bench queries in turn: repeats, as a shop's popular
    queries do, so the query-vector cache answers most of them) or ``search_new`` (two bench
    queries joined: a text not sent before, for the first 400 requests; then three joined, new up
    to 8,000 requests)."""
    queries = QUERIES.get(catalogue, QUERIES["grocery"])
    if route in ("recommend", "recommend_again"):
        return "GET", f"/users/{1 + (i * USER_STRIDE) % N_USERS}/recommendations", {"params": {"k": 10}}
    if route == "search":
        return "GET", f"/catalogues/{catalogue}/search", {"params": {"q": queries[i % len(queries)], "k": 10}}
    if route == "search_new":
        n = len(queries)
        q = f"{queries[i % n]} {queries[(i // n + 1 + i) % n]}"
        if i >= n * n:  # a third query: texts stay new for n ** 3 requests (8,000 with 20 queries)
            q += f" {queries[(i // (n * n) - 1 + i) % n]}"
        return "GET", f"/catalogues/{catalogue}/search", {"params": {"q": q, "k": 10}}
    raise CrossrecError(f"route={route!r}: allowed recommend, recommend_again, search, search_new")


@dataclass(frozen=True)
class BenchOptions:
    rate: float = 50.0  # requests/s per route in the main run
    duration_s: float = 60.0
    rates: tuple[float, ...] = (75.0, 100.0, 150.0)  # per route, tried in order until p99 > P99_TARGET_MS
    step_duration_s: float = 20.0
    workers: int = 2
    catalogue: str = "grocery"
    events_rate: float = 5.0  # click events/s posted during every run
    # The search route's texts: False, the catalogue's 20 bench queries in turn (popular queries
    # repeat: the figure); True, a text not sent before on every request (``search_new``).
    new_queries: bool = False
    timeout_s: float = 10.0  # a request slower than this counts as an error
    start_timeout_s: float = 900.0

    def __post_init__(self) -> None:
        for name in ("rate", "duration_s", "step_duration_s", "timeout_s", "start_timeout_s"):
            if not getattr(self, name) > 0:
                raise CrossrecError(f"{name}={getattr(self, name)!r}: must be > 0")
        if any(not r > 0 for r in self.rates):
            raise CrossrecError(f"rates={self.rates!r}: every rate must be > 0")


@dataclass(frozen=True)
class RouteFigures:
    rate: float
    requests: int
    errors: int
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None


def _figures(rate: float, samples: list[tuple[float, bool]]) -> RouteFigures:
    ok = np.array([ms for ms, good in samples if good])
    pct = (lambda q: round(float(np.percentile(ok, q)), 2)) if len(ok) else (lambda q: None)
    return RouteFigures(rate, len(samples), sum(1 for _, good in samples if not good), pct(50), pct(90), pct(99),
                        round(float(ok.max()), 2) if len(ok) else None)


class _Client:
    """A minimal HTTP/1.1 keep-alive client for the load (GET with a query, POST with JSON): the
    load runs on the same 2 cores as the service, so its own CPU per request must stay small (httpx
    used about half as much CPU per request as the service did in a session-8 smoke run)."""

    def __init__(self, base_url: str, timeout_s: float) -> None:
        from urllib.parse import urlsplit

        url = urlsplit(base_url)
        self.host, self.port, self.timeout_s = url.hostname, url.port or 80, timeout_s
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(self, method: str, path: str, params: dict | None = None, headers: dict | None = None,
                      json: object = None) -> int:
        """The response's status; raises OSError / asyncio errors when there is none in time."""
        import json as _json
        from urllib.parse import urlencode

        body = b"" if json is None else _json.dumps(json).encode()
        head = [f"{method} {path}{'?' + urlencode(params) if params else ''} HTTP/1.1", f"Host: {self.host}:{self.port}",
                f"Content-Length: {len(body)}"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
        if json is not None:
            head.append("Content-Type: application/json")
        data = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        return await asyncio.wait_for(self._exchange(data), self.timeout_s)

    async def _exchange(self, data: bytes) -> int:
        reused = bool(self.idle)
        reader, writer = self.idle.pop() if reused else await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(data)
            status_line = await reader.readline()
            if not status_line and reused:  # the server closed the idle connection: once more on a new one
                writer.close()
                return await self._exchange(data)  # bounded: each retry takes one idle connection away
            status = int(status_line.split()[1])
            length, keep = 0, True
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                name, value = name.strip().lower(), value.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection" and value == "close":
                    keep = False
                elif name == "transfer-encoding" and value == "chunked":
                    raise ValueError("chunked responses are not read by the bench client")
            await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        if keep:
            self.idle.append((reader, writer))
        else:
            writer.close()
        return status

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def open_loop(base_url: str, routes: dict[str, tuple[float, Callable[[int], tuple[str, str, dict]]]],
                    duration_s: float, timeout_s: float) -> dict[str, list[tuple[float, bool]]]:
    """Send each route's requests at its fixed rate for ``duration_s``; ``routes``: name -> (rate,
    i -> (method, path, kwargs with params / headers / json)). Returns (latency ms from the
    scheduled time, 2xx) per request; no answer within ``timeout_s`` counts as a failure."""
    loop = asyncio.get_running_loop()
    results: dict[str, list[tuple[float, bool]]] = {name: [] for name in routes}
    client = _Client(base_url, timeout_s)
    try:
        async def one(name: str, scheduled: float, method: str, path: str, kwargs: dict) -> None:
            try:
                good = 200 <= await client.request(method, path, **kwargs) < 300
            except (OSError, ValueError, IndexError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                good = False
            results[name].append(((loop.time() - scheduled) * 1000.0, good))

        async def drive(name: str, rate: float, make) -> None:
            start, tasks = loop.time(), []
            for i in range(int(rate * duration_s)):
                at = start + i / rate
                delay = at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(name, at, *make(i))))
            await asyncio.gather(*tasks)

        await asyncio.gather(*(drive(name, rate, make) for name, (rate, make) in routes.items()))
    finally:
        client.close()
    return results


def run_serve_bench(config: ServiceConfig, options: BenchOptions = BenchOptions(),
                    echo: Callable[[str], None] = print) -> dict:
    """Run the bench (see the module docstring) and return the JSON report: ``recommend`` and
    ``search`` figures at ``options.rate`` each, ``errors``, every step, and
    ``max_rps_p99_100ms`` (both routes together) with the load average of the machine."""
    from recsys.training import default_engine_dir

    ranker = Path(config.ranker_dir or default_engine_dir())
    if not (ranker / "config.json").is_file():
        raise CrossrecError(f"no trained ranking engine in {ranker}: run `crossrec rank train` (or `crossrec demo`) first")
    work = Path(tempfile.mkdtemp(prefix="crossrec-serve-bench-"))  # kept (with the logs) when the bench fails
    store = work / "profiles.db"
    shutil.copyfile(ranker / "profiles.db", store)  # the live store: the consumer writes it, the service reads it
    config = replace(config, ranker_dir=str(ranker))
    from crossrec.wiring import service_stack

    echo(f"serve-bench: broker, consumer and {options.workers} service workers (work dir {work}) ...")
    with service_stack(config, store=store, work=work, workers=options.workers, topic_prefix="bench",
                       start_timeout_s=options.start_timeout_s, echo=echo) as running:
        url, key = running.url, running.api_key
        search_route = "search_new" if options.new_queries else "search"
        def routes(rate: float) -> dict:
            return {
                "recommend": (rate, lambda i: bench_request("recommend", i)),
                "search": (rate, lambda i: bench_request(search_route, i, options.catalogue)),
                "events": (options.events_rate, lambda i: ("POST", "/events", {"headers": {"X-API-Key": key}, "json": {
                    "event_id": f"bench-{time.time_ns()}-{i}", "timestamp": time.time(), "user_id": 1 + (i * 53) % 943,
                    "item_id": 1 + (i * 101) % 1682, "kind": "click"}})),
            }

        def run(rate: float, duration: float) -> dict:
            load = os.getloadavg()[0]
            workers = _worker_pids(work / "server.log")  # read again: the service is ready once one worker is
            per_worker0 = [_cpu_seconds([pid]) for pid in workers]
            server0, client0, busy0, wall0 = sum(per_worker0), time.process_time(), _machine_busy(), time.perf_counter()
            cache0 = _recommend_cache_counts(url)
            samples = asyncio.run(open_loop(url, routes(rate), duration, options.timeout_s))
            per_worker = [_cpu_seconds([pid]) - before for pid, before in zip(workers, per_worker0)]
            server_s, client_s = sum(per_worker), time.process_time() - client0
            busy1, wall = _machine_busy(), time.perf_counter() - wall0  # the run, its last answers included
            busy = None if busy0 is None or busy1 is None else (busy1 - busy0) / wall
            hits, misses = (after - before for after, before in zip(_recommend_cache_counts(url), cache0))
            figs = {name: asdict(_figures(routes(rate)[name][0], s)) for name, s in samples.items()}
            sent = sum(len(s) for s in samples.values())
            # Where the CPU went: the service workers' and this client's CPU per request sent, and
            # the whole machine's busy share (other jobs included) over the run.
            figs["cpu"] = {"workers_seen": len(workers), "server_ms_per_request": round(1000 * server_s / max(sent, 1), 2),
                           "client_ms_per_request": round(1000 * client_s / max(sent, 1), 2),
                           "machine_busy_share": None if busy is None else round(busy, 3),
                           # each worker's share of a core over the run: one worker near 1.0 while the
                           # other idles is a queue that a second core cannot drain (keep-alive
                           # connections stay on the worker that accepted them)
                           "worker_core_share": [round(w / wall, 3) for w in per_worker]}
            # Recommendations answered from the workers' caches (a user asked again with no new
            # events, on the worker that ranked it before): the share of recommend requests.
            figs["recommend_cache_hit_share"] = round(hits / max(hits + misses, 1), 3)
            figs["loadavg_1m_before"] = round(load, 2)
            figs["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
            r, s, c = figs["recommend"], figs["search"], figs["cpu"]
            echo(f"  {rate:5.0f} req/s per route for {duration:.0f} s: recommend p50 {r['p50_ms']} p99 {r['p99_ms']} ms "
                 f"({r['errors']} errors), search p50 {s['p50_ms']} p99 {s['p99_ms']} ms ({s['errors']} errors), "
                 f"events {figs['events']['requests'] - figs['events']['errors']}/{figs['events']['requests']} acked; "
                 f"CPU per request: service {c['server_ms_per_request']} ms, client {c['client_ms_per_request']} ms; "
                 f"workers' core shares {c['worker_core_share']}; "
                 f"recommend cache hits {figs['recommend_cache_hit_share']:.0%}; "
                 f"load {figs['loadavg_1m_after']}")
            return figs

        run(min(options.rate, 10.0), 5.0)  # warm-up: first requests load lazy parts in every worker
        main = run(options.rate, options.duration_s)
        steps = [main]
        passed = lambda f: all(f[n]["errors"] == 0 and f[n]["p99_ms"] is not None and f[n]["p99_ms"] <= P99_TARGET_MS
                               for n in ("recommend", "search"))  # noqa: E731
        best = 2 * options.rate if passed(main) else 0.0
        if passed(main):
            for rate in sorted(options.rates):
                step = run(rate, options.step_duration_s)
                steps.append(step)
                if not passed(step):
                    break
                best = 2 * rate
        errors = sum(f[n]["errors"] for f in steps for n in ("recommend", "search", "events"))
        report = {
            "recommend": main["recommend"], "search": main["search"], "events": main["events"],
            "rate_per_route": options.rate, "duration_s": options.duration_s, "errors": errors,
            "max_rps_p99_100ms": best,
            "max_rps_note": "both routes together; the highest tried rate whose p99 <= 100 ms with 0 errors "
                            "(0 if the main run missed it)",
            "steps": [{"rate_per_route": f["recommend"]["rate"], **f} for f in steps],
            "workers": options.workers, "torch_threads": config.torch_threads, "catalogue": options.catalogue,
            "search_texts": "new on every request" if options.new_queries else "the catalogue's 20 bench queries in turn",
            "recommend_cache": config.recommend_cache, "search_cache": config.search_cache,
            "cpus": os.cpu_count(), "loadavg_end": list(os.getloadavg()),
        }
    shutil.rmtree(work, ignore_errors=True)
    return report


def _recommend_cache_counts(base_url: str) -> tuple[float, float]:
    """(hits, misses) of the recommendation caches of every worker so far, from ``/metrics``."""
    import re
    import urllib.request

    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as response:
        text = response.read().decode("utf-8", errors="replace")
    found = dict(re.findall(r'^crossrec_recommend_cache_total\{result="(hit|miss)"\} (\S+)$', text, re.M))
    return float(found.get("hit", 0.0)), float(found.get("miss", 0.0))


def _worker_pids(server_log: Path) -> list[int]:
    """The service workers' process ids, from the start-up line each prints to the server log."""
    import re

    try:
        text = server_log.read_text("utf-8", errors="replace")
    except OSError:
        return []
    return sorted({int(m) for m in re.findall(r"crossrec worker (\d+): models loaded", text)})


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes (Linux /proc; 0 for gone ones)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / tick


def _machine_busy() -> float | None:
    """Busy CPU seconds of the whole machine so far, in core-seconds divided by the core count (a
    difference over a run divided by its length is the busy share); None without /proc/stat."""
    try:
        cpu = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(x) for x in cpu]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK") / (os.cpu_count() or 1)


async def _asgi_request(app, method: str, path: str, params: dict) -> tuple[int, bytes]:
    """One request straight into the ASGI app (no client, no socket): (status, body)."""
    from urllib.parse import urlencode

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": urlencode(params).encode(), "root_path": "",
             "headers": [(b"host", b"cpu-bench")], "client": ("127.0.0.1", 0), "server": ("127.0.0.1", 80)}
    status, body = 0, []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(body)


def run_cpu_bench(config: ServiceConfig, requests: int = 200, catalogue: str = "grocery",
                  routes: tuple[str, ...] = ("recommend", "recommend_again", "search", "search_new"),
                  echo: Callable[[str], None] = print) -> dict:
    """CPU per request of each read route in this process: the service's models loaded as one
    worker loads them, then ``requests`` requests per route sent one after another through the
    ASGI app (middleware, FastAPI's validation, the thread-pool hop, the engine, the response
    model and JSON; no client and no socket, so neither the client nor uvicorn's HTTP parsing is
    counted). CPU time (``time.process_time``, every
    thread of the process) is barely moved by other jobs on the machine, unlike latency. Each
    measured ``recommend`` is for a user not asked for before in the process, so it is ranked
    whether or not the recommendation cache is on (the cost of a miss); ``recommend_again`` then
    asks for the same users again (the cost of a hit when the cache is on, of ranking when it is
    off). Returns the JSON report."""
    from crossrec.service.app import create_app, freeze_loaded
    from crossrec.service.engine import ServiceEngine

    if requests < 1 or requests + WARM_UP > N_USERS:
        raise CrossrecError(f"requests={requests!r}: allowed 1 to {N_USERS - WARM_UP} (one per user)")
    started = time.perf_counter()
    app = create_app(ServiceEngine.load(config))
    freeze_loaded()  # as a worker does
    echo(f"cpu-bench: models loaded in {time.perf_counter() - started:.0f} s; {requests} requests per route, one at a time")
    report: dict = {"requests": requests, "catalogue": catalogue, "torch_threads": config.torch_threads,
                    "recommend_cache": config.recommend_cache, "search_cache": config.search_cache, "routes": {}}

    async def send(route: str, i: int) -> float:
        method, path, kwargs = bench_request(route, i, catalogue)
        sent = time.perf_counter()
        status, body = await _asgi_request(app, method, path, kwargs.get("params", {}))
        if status != 200:
            raise CrossrecError(f"{method} {path} answered {status}: {body[:300]!r}")
        return (time.perf_counter() - sent) * 1000

    async def measure() -> None:
        for route in routes:
            for i in range(WARM_UP):  # lazy parts, first-call costs, and the bench queries' vectors
                await send(route, i)
            load = os.getloadavg()[0]
            cpu = time.process_time()
            wall = [await send(route, WARM_UP + i) for i in range(requests)]
            cpu_ms = (time.process_time() - cpu) * 1000 / requests
            report["routes"][route] = {"cpu_ms_per_request": round(cpu_ms, 2),
                                       "wall_p50_ms": round(float(np.percentile(wall, 50)), 2),
                                       "loadavg_1m_before": round(load, 2), "loadavg_1m_after": round(os.getloadavg()[0], 2)}
            echo(f"  {route:10s} CPU {cpu_ms:6.2f} ms per request (wall p50 {np.percentile(wall, 50):.1f} ms; "
                 f"load average {load:.1f} -> {os.getloadavg()[0]:.1f})")

    asyncio.run(measure())
    report["cpus"] = os.cpu_count()
    return report
