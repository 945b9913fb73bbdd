"""Run the service: uvicorn with N worker processes, each building the app from the environment."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from crossrec.service.config import ENV_CONFIG, ServiceConfig
from crossrec_core.errors import CrossrecError
from crossrec_core.persist import atomic_write_text
from crossrec_core.paths import DATA_DIR_ENV, cache_dir, models_dir

__all__ = ["serve", "service_env", "search_cache_is_warm", "warm_search_cache"]

APP_FACTORY = "crossrec.service.app:create_app_from_env"
# uvicorn's supervisor pings each worker every 0.5 s and kills (then restarts) one that does not
# answer within this. Its default, 5 s, killed workers while they imported torch and loaded the
# models on a loaded machine (the answering thread waits for the GIL, which an import or a full
# collection holds for seconds): at load 11 the workers restarted every 10 to 30 s and never
# became ready. A worker stuck for this long is still replaced.
WORKER_HEALTHCHECK_S = 120


def service_env(config: ServiceConfig, metrics_dir: str | None = None) -> dict[str, str]:
    """The environment a worker process needs: the config, one torch/BLAS thread each (several
    workers share the cores), and the shared Prometheus folder when there are several workers."""
    env = {ENV_CONFIG: config.to_env(), "OMP_NUM_THREADS": str(config.torch_threads),
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": str(config.torch_threads), "TOKENIZERS_PARALLELISM": "false"}
    if metrics_dir:
        env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    return env


def _build_search_vectors(catalogues: tuple[str, ...], data_dir: str | None, torch_threads: int) -> None:
    import torch

    from retrieval.searcher import Searcher

    torch.set_num_threads(torch_threads)
    for name in catalogues:
        Searcher.load(name, data_dir=data_dir)


def _warm_key(config: ServiceConfig) -> str:
    """What the built search vectors depend on that can change between starts: the catalogues,
    the data folder and every saved model's weights and config (name, size, modification time;
    not the profile stores that live beside some models and change while serving)."""
    digest = hashlib.sha256(json.dumps([list(config.catalogues), config.data_dir,
                                        os.environ.get(DATA_DIR_ENV)]).encode())
    root = models_dir()
    for path in sorted(root.rglob("*")) if root.is_dir() else ():
        if path.is_file() and (path.suffix == ".safetensors" or path.name == "config.json"):
            stat = path.stat()
            digest.update(f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def _warm_stamp(config: ServiceConfig) -> Path:
    return cache_dir("search") / f"warm-{_warm_key(config)}.json"


def search_cache_is_warm(config: ServiceConfig) -> bool:
    """True when :func:`warm_search_cache` ran for these catalogues and models and every vector
    file it left is still there (a cleared cache or a retrained model makes it build again)."""
    stamp = _warm_stamp(config)
    try:
        files = json.loads(stamp.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return all((stamp.parent / name).is_file() for name in files)


def _record_warm(config: ServiceConfig) -> None:
    """The stamp :func:`search_cache_is_warm` reads: the vector files present after a build."""
    stamp = _warm_stamp(config)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    files = sorted(p.name for p in stamp.parent.glob("*.npy"))
    atomic_write_text(stamp, json.dumps({"catalogues": list(config.catalogues), "files": files}))


def warm_search_cache(config: ServiceConfig, echo: Callable[[str], None] = print) -> float:
    """Build every served catalogue's search vectors (MiniLM, e5, aligned image/fused) once, into
    the Searcher's cache under ``$CROSSREC_HOME/cache/search``, before any worker starts: the
    build may then use every core (a worker serves with ``torch_threads``, one by default), and N
    workers starting at once only load the vectors instead of each encoding the catalogues. Runs
    in a child process: the parent (the uvicorn supervisor) keeps no models. A stamp file records
    the build, so later starts skip the child (and its model load) altogether.
    Returns the seconds it took (0 when the stamp says the vectors are there)."""
    if search_cache_is_warm(config):
        return 0.0
    started = time.perf_counter()
    echo(f"  search vectors for {', '.join(config.catalogues)}: building once before the workers start "
         "(cached; later starts only load them) ...")
    threads = max(config.torch_threads, os.cpu_count() or 1)
    proc = mp.get_context("spawn").Process(target=_build_search_vectors, name="crossrec-search-warm",
                                           args=(config.catalogues, config.data_dir, threads))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise CrossrecError(f"building the search vectors failed (exit code {proc.exitcode}); "
                            f"run `crossrec retrieval search --dataset {config.catalogues[0]} test` to see why")
    _record_warm(config)
    took = time.perf_counter() - started
    echo(f"  search vectors ready in {took:.0f} s")
    return took


def serve(config: ServiceConfig, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          log_level: str = "warning", echo: Callable[[str], None] = print) -> None:
    """Serve until interrupted. ``workers`` > 1 starts that many processes on one port (each loads
    the models once and reads the same live profile store); the search vectors are built once
    before they start (``warm_search_cache``), with every core, also for a single worker."""
    import uvicorn

    if workers < 1:
        raise ValueError(f"workers={workers!r}: must be >= 1")
    warm_search_cache(config, echo=echo)
    metrics_dir = tempfile.mkdtemp(prefix="crossrec-metrics-") if workers > 1 else None
    os.environ.update(service_env(config, metrics_dir))
    try:
        # loop/http "auto" pick uvloop and httptools (dependencies: about 0.5 ms of CPU less per
        # request than asyncio + h11); no access log: a line per request costs CPU and says nothing
        # the metrics do not.
        uvicorn.run(APP_FACTORY, factory=True, host=host, port=port, workers=workers, log_level=log_level,
                    loop="auto", http="auto", access_log=False, timeout_graceful_shutdown=10,
                    timeout_worker_healthcheck=WORKER_HEALTHCHECK_S)
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
