"""``crossrec creative loop-bench``: the issue-12 figures in one run.

- bandit: the simulation of :mod:`generation.bandit_sim` with every impression and click going
  through the real broker (creative-feedback topic) into :class:`~crossrec.creative_worker.FeedbackHandler`;
  then the bandit is closed and reopened (state identical?) and the whole topic is replayed into it
  by a new consumer group (nothing counted twice?).
- worker: ``burst`` light requests (template copy + one poster variant) published at once; the
  creative worker (a separate process) is killed with SIGKILL after a third were answered, then
  restarted; lost = requests neither answered nor dead-lettered, duplicates = results repeating a
  request id, extra assets = files in the asset store that no result refers to.
- trailer: in a warm process (models loaded, one trailer rendered), an 8 s 24 fps 480x720 trailer
  (render + encode + watermark, signing reported apart) and the memory a 60 s one adds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["LoopBenchConfig", "KafkaFeedbackChannel", "run_loop_bench"]

PARTS = ("bandit", "worker", "trailer")


@dataclass(frozen=True)
class LoopBenchConfig:
    impressions: int = 50_000
    tail: int = 10_000
    round_size: int = 500
    burst: int = 200
    variants: int = 1  # poster variants per burst request (1: the light request)
    kill_after: float = 1 / 3
    trailer_items: int = 3
    skip: tuple[str, ...] = ()
    bootstrap: str | None = None
    storage: str = "memory"  # the bench's own broker: Tansu's in-memory log (the S3 log: "s3")
    data_dir: str | None = None
    seed: int = 0
    worker_timeout_s: float = 1800.0
    max_age_s: float = 3600.0  # the worker's expiry: above the burst's length, so requests are generated

    def __post_init__(self) -> None:
        bad = [s for s in self.skip if s not in PARTS]
        if bad:
            raise ValueError(f"skip={self.skip!r}: parts are {PARTS}")
        if self.impressions < self.tail or self.tail < 1:
            raise ValueError(f"impressions={self.impressions}, tail={self.tail}: need 1 <= tail <= impressions")
        if not 1 <= self.variants <= 16:
            raise ValueError(f"variants={self.variants!r}: must be in 1..16")
        if self.burst < 1 or not 0 < self.kill_after < 1:
            raise ValueError(f"burst={self.burst}, kill_after={self.kill_after}: need burst >= 1, 0 < kill_after < 1")


class KafkaFeedbackChannel:
    """The simulation's feedback path: impressions and clicks are published to the feedback topic,
    read back by a consumer group and applied by the same :class:`FeedbackHandler` a deployment runs."""

    def __init__(self, bootstrap: str, topics, bandit, families: dict[str, str], *, group_id: str = "bandit") -> None:
        from crossrec.creative_worker import FeedbackHandler
        from streaming.producer import EventProducer
        from streaming.source import KafkaEventSource

        self.topics, self.families = topics, families
        self.producer = EventProducer(bootstrap, client_id="sim-feedback")
        self.source = KafkaEventSource(bootstrap, [topics.creative_feedback], group_id, fetch_max_wait_ms=20)
        self.handler = FeedbackHandler(bandit)
        self.sent = self.received = self.rejected = 0

    def _event(self, ev):
        from generation.bandit import Impression
        from streaming.events import CreativeClick, CreativeImpression

        family = self.families[ev.variant_id]
        if isinstance(ev, Impression):
            return CreativeImpression(event_id=ev.event_id, timestamp=time.time(), user_id=int(ev.user_id),
                                      item_id=int(ev.item_id), variant_id=ev.variant_id, family=family)
        item = ev.variant_id.split(":")[0]
        return CreativeClick(event_id=ev.event_id, timestamp=time.time(), impression_id=ev.impression_id,
                             user_id=int(ev.user_id), item_id=int(item), variant_id=ev.variant_id, family=family)

    def deliver(self, events) -> None:
        for ev in events:
            self.producer.send(self.topics.creative_feedback, self._event(ev))
        self.producer.flush()
        self.sent += len(events)
        self.drain(self.sent)

    def drain(self, until: int, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.received < until:
            if time.monotonic() > deadline:
                raise TimeoutError(f"feedback: {self.received} of {until} events came back within {timeout_s:.0f}s")
            deliveries = self.source.poll(0.5, 5000)
            events = [d.event for d in deliveries if d.event is not None]
            if events:
                result = self.handler.handle(events)
                self.rejected += len(result.rejected)
                self.handler.flush()
                self.source.commit(wait=False)
            self.received += len(deliveries)

    def close(self) -> None:
        self.source.commit(wait=True)
        self.source.close()
        self.producer.close()


def _bandit_part(config: LoopBenchConfig, bootstrap: str, work: Path, progress: bool) -> dict:
    from tqdm import tqdm

    from generation.bandit import Bandit
    from generation.bandit_sim import SimulatedWorld, SimulationConfig, new_bandit, simulate
    from streaming.events import Topics
    from streaming.producer import ensure_topics

    topics = Topics(prefix=f"loop{os.getpid()}b")
    ensure_topics(bootstrap, topics)
    world = SimulatedWorld(SimulationConfig(impressions=config.impressions, tail=config.tail,
                                            round_size=config.round_size, seed=config.seed))
    state = work / "bandit"
    bandit = new_bandit(world, state, seed=config.seed)
    families = {v.variant_id: v.family for v in world.variants()}
    channel = KafkaFeedbackChannel(bootstrap, topics, bandit, families)
    started = time.perf_counter()
    with tqdm(total=config.impressions, desc="bandit via broker", unit="imp", disable=not progress) as bar:
        report = simulate(world, bandit, channel, progress=lambda n: bar.update(min(n, config.round_size)))
    elapsed = time.perf_counter() - started
    channel.close()
    bandit.flush()
    digest = bandit.state_digest()
    bandit.close()
    reopened = Bandit.open(state)
    restart_identical = reopened.state_digest() == digest
    replay = KafkaFeedbackChannel(bootstrap, topics, reopened, families, group_id="bandit-replay")
    replay.drain(channel.sent)
    replay.close()
    reopened.flush()
    replay_identical = reopened.state_digest() == digest
    reopened.close()
    summary = report.summary()
    out = {name: summary[name] for name in ("bandit", "random", "best_single", "oracle")}
    for name in out:
        out[name] = {k: v for k, v in out[name].items()}
        out[name]["ctr_all"] = out[name]["ctr"]
        out[name]["ctr"] = out[name].pop("ctr_tail")  # the headline: the last `tail` impressions
    return {**out, "impressions": config.impressions, "tail": config.tail,
            "bandit_vs_oracle": summary["bandit_vs_oracle"], "bandit_vs_random": summary["bandit_vs_random"],
            "segment_purity": summary["segment_purity"], "feedback_events": channel.sent,
            "feedback_rejected": channel.rejected, "seconds": round(elapsed, 1),
            "restart_identical": restart_identical, "replay_identical": replay_identical,
            "replay_duplicates_ignored": replay.received}


def _worker_cmd(bootstrap: str, prefix: str, state: Path, data_dir: str | None, idle: float | None,
                max_age_s: float, variants: int) -> list[str]:
    cmd = [sys.executable, "-m", "crossrec.cli", "creative", "worker", "--bootstrap", bootstrap, "--prefix", prefix,
           "--state", str(state), "--light", "--variants", str(variants), "--max-batch", "4", "--max-age", str(max_age_s)]
    if data_dir:
        cmd += ["--data-dir", data_dir]
    if idle:
        cmd += ["--idle-timeout", str(idle)]
    return cmd


def _light_requests(n: int, seed: int, data_dir) -> list:
    import numpy as np

    from crossrec_datasets import load_movielens
    from streaming.events import CreativeRequest

    ratings = load_movielens(data_dir).ratings
    rng = np.random.default_rng(seed)
    rows = rng.choice(ratings.height, size=n, replace=False)
    users, items = ratings["user_id"].to_numpy()[rows], ratings["item_id"].to_numpy()[rows]
    now = time.time()
    return [CreativeRequest(event_id=f"creq:{u}:{i}:{k}", timestamp=now, user_id=int(u), item_id=int(i), rank=0)
            for k, (u, i) in enumerate(zip(users, items))]


def _worker_part(config: LoopBenchConfig, bootstrap: str, work: Path, progress: bool) -> dict:
    from streaming.events import CreativeResult, DeadLetter, Topics
    from streaming.producer import EventProducer, ensure_topics
    from streaming.source import KafkaEventSource

    topics = Topics(prefix=f"loop{os.getpid()}w")
    ensure_topics(bootstrap, topics)
    state = work / "worker"
    requests = _light_requests(config.burst, config.seed, config.data_dir)
    wanted = {r.event_id for r in requests}
    results: list = []
    dead: list = []
    reader = KafkaEventSource(bootstrap, [topics.creative_results, topics.dead_letter], "loop-bench-reader")
    log = open(work / "worker.log", "ab")
    proc = subprocess.Popen(_worker_cmd(bootstrap, topics.prefix, state, config.data_dir, None, config.max_age_s,
                                        config.variants), stdout=log,
                            stderr=subprocess.STDOUT)
    with EventProducer(bootstrap) as producer:
        for r in requests:
            producer.send(topics.creative_requests, r)
    started = time.monotonic()
    killed_at = None

    def collect() -> None:
        for d in reader.poll(0.5, 1000):
            if isinstance(d.event, CreativeResult):
                results.append(d.event)
            elif isinstance(d.event, DeadLetter):
                dead.append(d.event)
        reader.commit(wait=False)

    def answered() -> set:
        return {r.request_id for r in results} | {json.loads(d.payload).get("event_id") for d in dead
                                                  if d.payload.startswith("{")}

    try:
        while killed_at is None:
            collect()
            if len(answered() & wanted) >= config.burst * config.kill_after:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed_at = len(answered() & wanted)
            elif proc.poll() is not None:
                raise RuntimeError(f"the creative worker exited early (status {proc.returncode}); see {work / 'worker.log'}")
            elif time.monotonic() - started > config.worker_timeout_s:
                raise TimeoutError(f"worker: {len(answered() & wanted)} answered in {config.worker_timeout_s:.0f}s")
        proc = subprocess.Popen(_worker_cmd(bootstrap, topics.prefix, state, config.data_dir, None, config.max_age_s,
                                        config.variants), stdout=log,
                                stderr=subprocess.STDOUT)
        while not wanted <= answered():
            collect()
            if proc.poll() is not None:
                raise RuntimeError(f"the restarted worker exited (status {proc.returncode}); see {work / 'worker.log'}")
            if time.monotonic() - started > config.worker_timeout_s:
                break
        elapsed = time.monotonic() - started
        time.sleep(3.0)  # late duplicates, if any, arrive now
        collect()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        reader.close()
        log.close()
    by_request = Counter(r.request_id for r in results if r.request_id in wanted)
    referenced = {a.asset_id for r in results for a in r.assets}
    stored = {p.name for p in (state / "assets").rglob("*") if p.is_file() and not p.name.startswith(".")}
    statuses = Counter(r.status for r in results)
    ok = [r for r in results if r.status == "ok"]
    dlq_ids = answered() - {r.request_id for r in results}
    return {
        "requests": config.burst, "killed_after_answered": killed_at, "answered": len(by_request),
        "dead_lettered": len(dlq_ids & wanted), "lost": len(wanted - answered()),
        "duplicates": sum(n - 1 for n in by_request.values()), "statuses": dict(statuses),
        "assets_stored": len(stored), "assets_referenced": len(referenced), "extra_assets": len(stored - referenced),
        "variants_requested": config.variants,
        "posters_per_result": round(sum(a.kind == "poster" for r in ok for a in r.assets) / max(1, len(ok)), 2),
        "seconds": round(elapsed, 1), "requests_per_s": round(config.burst / elapsed, 3),
        "transactions": "not used: Tansu accepts them but delivers aborted records to read_committed consumers",
    }


def _trailer_part(config: LoopBenchConfig, progress: bool) -> dict:
    from crossrec.creative import user_taste
    from generation.catalogue import load_catalogue
    from generation.copy import TemplateCopyWriter
    from generation.studio import Studio
    from generation.trailer import ComposedFrames, TrailerConfig, plan_trailer, render_trailer
    from generation.trailer.mark import sign_trailer, watermark_marker

    items = load_catalogue("ml100k", config.data_dir)
    taste = user_taste("ml100k", "1", items, data_dir=config.data_dir)
    chosen = [e.item for e in taste.liked if e.item.image is not None][:config.trailer_items]
    studio = Studio(items, copy_writer=TemplateCopyWriter())
    writer = studio.copy_writer
    controls = studio.controls(chosen[0], taste.user_id, taste.liked)  # loads the style model
    captions = [writer.write(it, controls).tagline or it.title for it in chosen]
    out: dict = {"load_avg_before": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory() as tmp:
        def one(seconds: float, name: str):
            cfg = TrailerConfig(seconds=seconds)
            plan = plan_trailer(chosen, captions, controls, cfg)
            result = render_trailer(plan, ComposedFrames(cfg, controls, style=studio.style_model), Path(tmp) / name,
                                    cfg, marker=watermark_marker(7))
            t0 = time.perf_counter()
            sign_trailer(Path(tmp) / name, payload_id=7, title="bench")
            return result, time.perf_counter() - t0

        one(2.0, "warm.mp4")  # warm: fonts, OpenCV, ONNX sessions, watermark tables
        r8, sign8 = one(8.0, "t8.mp4")
        r60, _ = one(60.0, "t60.mp4")
        r8b, _ = one(8.0, "t8b.mp4")
    out.update({"seconds_8s": round(r8.wall_s, 3), "seconds_8s_repeat": round(r8b.wall_s, 3),
                "render_s_8s": round(r8.render_s, 3), "watermark_s_8s": round(r8.mark_s, 3),
                "encode_wait_s_8s": round(r8.encode_wait_s, 3), "sign_s_8s": round(sign8, 3),
                "peak_mb_8s": round(r8.rss_added_mb, 1), "peak_mb_60s": round(r60.rss_added_mb, 1),
                "peak_mb_8s_repeat": round(r8b.rss_added_mb, 1), "ffmpeg_peak_mb_8s": round(r8.ffmpeg_peak_mb, 1),
                "ffmpeg_peak_mb_60s": round(r60.ffmpeg_peak_mb, 1), "seconds_60s": round(r60.wall_s, 2),
                "frames_8s": r8.frames, "frames_60s": r60.frames, "load_avg_after": round(os.getloadavg()[0], 2)})
    return out


def _table(report: dict) -> str:
    lines = []
    b = report.get("bandit")
    if b:
        lines.append(f"bandit ({b['impressions']} impressions via the broker, last {b['tail']}):")
        for name in ("bandit", "oracle", "best_single", "random"):
            lines.append(f"  {name:<12} CTR {b[name]['ctr']:.4f} (all {b[name]['ctr_all']:.4f}), "
                         f"regret {b[name]['regret']:.1f}")
        lines.append(f"  bandit/oracle {b['bandit_vs_oracle']:.3f} (target >= 0.9), bandit/random "
                     f"{b['bandit_vs_random']:.3f} (target >= 1.2); restart identical {b['restart_identical']}, "
                     f"replay identical {b['replay_identical']}")
    w = report.get("worker")
    if w:
        lines.append(f"worker: {w['requests']} light requests, kill -9 after {w['killed_after_answered']} answered: "
                     f"lost {w['lost']}, duplicates {w['duplicates']}, extra assets {w['extra_assets']}, "
                     f"dead-lettered {w['dead_lettered']}, {w['requests_per_s']} requests/s; "
                     f"{w['posters_per_result']} poster variants per result ({w['variants_requested']} rendered)")
    t = report.get("trailer")
    if t:
        lines.append(f"trailer: 8 s 480x720 in {t['seconds_8s']} s (repeat {t['seconds_8s_repeat']} s; target <= 10); "
                     f"memory added 8 s {t['peak_mb_8s']} MB, 60 s {t['peak_mb_60s']} MB (target <= 1.5x)")
    lines.append(f"broker: {report['broker']}; load average {report['load_avg']}")
    return "\n".join(lines)


def run_loop_bench(config: LoopBenchConfig = LoopBenchConfig(), *, json_path: str | os.PathLike | None = None,
                   progress: bool = True) -> dict:
    """Run the parts not in ``config.skip``; returns (and writes to ``json_path``) the report."""
    from crossrec_core.persist import atomic_write_text
    from streaming.broker import Broker, BrokerConfig

    report: dict = {"config": asdict(config)}
    with tempfile.TemporaryDirectory(prefix="loop-bench-") as tmp:
        work = Path(tmp)
        broker = None
        bootstrap = config.bootstrap
        needs_broker = any(p not in config.skip for p in ("bandit", "worker"))
        if needs_broker and bootstrap is None:
            broker = Broker(BrokerConfig(data_dir=str(work / "broker"), kafka_port=0, s3_port=0,
                                         storage=config.storage)).__enter__()
            bootstrap = broker.bootstrap
        try:
            if "bandit" not in config.skip:
                report["bandit"] = _bandit_part(config, bootstrap, work, progress)
            if "worker" not in config.skip:
                report["worker"] = _worker_part(config, bootstrap, work, progress)
        finally:
            if broker is not None:
                broker.__exit__(None, None, None)
        if "trailer" not in config.skip:
            report["trailer"] = _trailer_part(config, progress)
    b = report.get("bandit", {})
    for name in ("bandit", "oracle", "random", "best_single"):
        if name in b:
            report[f"{name}.ctr"] = b[name]["ctr"]
    if b:
        report["impressions"] = b["impressions"]
    for key, part, field in (("worker.lost", "worker", "lost"), ("worker.duplicates", "worker", "duplicates"),
                             ("trailer.seconds_8s", "trailer", "seconds_8s"), ("trailer.peak_mb_8s", "trailer", "peak_mb_8s"),
                             ("trailer.peak_mb_60s", "trailer", "peak_mb_60s")):
        if part in report:
            report[key] = report[part][field]
    report["broker"] = config.bootstrap or f"embedded Tansu, {config.storage} log"
    report["load_avg"] = [round(v, 2) for v in os.getloadavg()]
    report["table"] = _table(report)
    if json_path:
        atomic_write_text(json_path, json.dumps(report, indent=2, default=str))
    return report
