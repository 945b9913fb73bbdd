"""Run the service: uvicorn with N worker processes, each building the app from the environment."""

from __future__ import annotations

import os
import shutil
import tempfile

from crossrec.service.config import ENV_CONFIG, ServiceConfig

__all__ = ["serve", "service_env"]

APP_FACTORY = "crossrec.service.app:create_app_from_env"


def service_env(config: ServiceConfig, metrics_dir: str | None = None) -> dict[str, str]:
    """The environment a worker process needs: the config, one torch/BLAS thread each (several
    workers share the cores), and the shared Prometheus folder when there are several workers."""
    env = {ENV_CONFIG: config.to_env(), "OMP_NUM_THREADS": str(config.torch_threads),
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": str(config.torch_threads), "TOKENIZERS_PARALLELISM": "false"}
    if metrics_dir:
        env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    return env


def serve(config: ServiceConfig, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          log_level: str = "warning") -> None:
    """Serve until interrupted. ``workers`` > 1 starts that many processes on one port (each loads
    the models once and reads the same live profile store)."""
    import uvicorn

    if workers < 1:
        raise ValueError(f"workers={workers!r}: must be >= 1")
    metrics_dir = tempfile.mkdtemp(prefix="crossrec-metrics-") if workers > 1 else None
    os.environ.update(service_env(config, metrics_dir))
    try:
        uvicorn.run(APP_FACTORY, factory=True, host=host, port=port, workers=workers, log_level=log_level,
                    timeout_graceful_shutdown=10)
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
