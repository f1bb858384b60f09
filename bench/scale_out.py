"""Benchmark: the distributed roles over NATS JetStream — throughput per worker count,
capture → detector latency, broker bytes and CPU per frame.

Every role runs as its own process, as in production: a private `nats-server -js` (with
its monitoring port, for the bytes it moved), `hazardwatch capture` and `hazardwatch
events` from the command line, and N workers. The workers score with a fake encoder that
sleeps a fixed time per batch, standing in for a GPU (`--batch-seconds`, 0.4 s per batch
of 8 in the throughput phase; `--live-batch-seconds`, 0.05 s, in the live phase): the
model's compute is not what is measured, and 2 cores could not show scaling with a real
one.

Per worker count, two phases:

1. **throughput** — `--frames-per-worker` × N frames of the shared footage wait in the
   frames stream; N workers start and score them. frames/s is the rate between 20 % and
   90 % of the scores published (start-up of the worker processes excluded);
2. **live** — a capture node with `--cameras` cameras (the shared clip, looped at its frame
   rate, each its own reader, gate and sampler), N workers and the events service, for
   `--seconds`: capture → detector-stage latency (p50/p95, from the events service's
   `hazardwatch_frame_latency_seconds`, which includes the reorder window), broker bytes
   per frame (the server's in + out bytes), and CPU per frame of each role.

During each live phase, `hazardwatch run` as one process on the same cameras with the
same fake encoder runs beside the roles (so that the machine's drift hits both alike):
the broker's overhead is the CPU per frame of all distributed processes (nats-server
included) minus that of the single process. The roles' idle CPU
(measured before capture starts) splits it into a fixed part and what each frame adds,
and the JPEG in every message (its encode and the worker's decode, timed alone) from the
messaging. The capture side alone, with a sink that drops frames, one that only encodes
them, and the JetStream sink, shows what a capture node spends beyond the readers and
gates one process runs too.

    python bench/scale_out.py [--workers 1,2,4,8] [--cameras 8] [--seconds 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import SHARED_DIR
from tests.fakes import FakeEncoder

from hazardwatch.handoff.frames import FramesLayout, JetStreamSink, ensure_frames_stream
from hazardwatch.handoff.link import BrokerLink
from hazardwatch.handoff.scores import ScoresLayout, ensure_scores_stream
from hazardwatch.records import Frame, GatedFrame, MotionResult
from procs import (
    Process,
    cpu_flags,
    free_port,
    get,
    nats_server,
    scrape,
    total,
    wait_ready,
)
from wire_size import frames

REPO = Path(__file__).resolve().parents[1]
VIDEO = SHARED_DIR / "data" / "videos" / "car-detection.mp4"
S = TypeVar("S")


class BatchSleepEncoder(FakeEncoder):
    """The tests' deterministic fake encoder, plus a fixed sleep per batch (a GPU's time)."""

    name = "fake-sleep-per-batch"

    def __init__(self, seconds_per_batch: float) -> None:
        super().__init__()
        self.seconds_per_batch = seconds_per_batch

    def encode_images(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(self.seconds_per_batch)
        return super().encode_images(batch)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------- processes


class Nats:
    def __init__(self, directory: Path) -> None:
        self.port, self.http = free_port(), free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        popen = nats_server(directory, self.port, self.http, ARGS.nats_gogc)
        self.process = Process("nats", popen)
        wait_ready(self.http, "/varz", timeout=10)

    def traffic(self) -> float:
        varz = json.loads(get(f"http://127.0.0.1:{self.http}/varz"))
        return float(varz["in_bytes"] + varz["out_bytes"])


def launch(name: str, args: list[str], port: int | None, log: Path) -> Process:
    out = log.open("ab")
    popen = subprocess.Popen(args, cwd=REPO, stdout=out, stderr=out)
    return Process(name, popen, port)


def config(directory: Path, nats: Nats | None, cameras: int, *, backlog: bool) -> Path:
    """A config file for every role of one run; `backlog`: frames wait for minutes."""
    directory.mkdir(parents=True, exist_ok=True)
    api_port = free_port()
    settings: dict[str, Any] = {
        "cameras": [
            {"name": f"cam{i}", "url": str(VIDEO), "loop": True} for i in range(1, cameras + 1)
        ],
        "storage": {
            "database_url": f"sqlite:///{directory / 'hazardwatch.db'}",
            "data_dir": str(directory / "data"),
        },
        "media": {"dir": str(directory / "media")},
        "api": {"port": api_port},
        "scoring": {"batch_size": ARGS.batch},
        "log_level": "WARNING",
    }
    if backlog:
        settings["scoring"]["max_frame_age_s"] = 600
    if nats is not None:
        settings["broker"] = {"url": nats.url}
    path = directory / f"hw-{api_port}.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def start_workers(count: int, cfg: Path, log: Path, batch_seconds: float) -> list[Process]:
    workers = []
    for i in range(count):
        port = free_port()
        args = [sys.executable, __file__, "--role", "worker", "--config", str(cfg),
                "--api-port", str(port), "--batch-seconds", str(batch_seconds)]  # fmt: skip
        workers.append(launch(f"worker{i}", args, port, log))
    for worker in workers:
        assert worker.port is not None
        wait_ready(worker.port)
    return workers


@contextmanager
def stopping(processes: list[Process]) -> Iterator[None]:
    try:
        yield
    finally:
        for process in reversed(processes):
            process.stop()


# ---------------------------------------------------------------------------- phases


def footage(count: int) -> list[np.ndarray]:
    return frames(VIDEO, count)  # the wire-size bench's frames of the shared footage


@dataclass
class Throughput:
    frames_per_s: float
    # Saturated, so idle polling does not count: what one more frame costs.
    cpu_ms_per_frame: dict[str, float]


def throughput(workers: int, directory: Path, log: Path) -> Throughput:
    """Frames/s of `workers` workers on a backlog (20 % → 90 % of it scored)."""
    nats = Nats(directory / "nats")
    want = ARGS.frames_per_worker * workers
    link = BrokerLink(nats.url, "bench")
    link.start()
    try:
        frames = FramesLayout(max_age_s=600, ack_wait_s=2.0)
        ensure_frames_stream(link, frames)
        ensure_scores_stream(link, ScoresLayout())
        sink = JetStreamSink(link, frames, buffer=want + 1)
        images = footage(60)
        for i in range(want):
            frame = Frame(f"cam{i % ARGS.cameras + 1}", i, time.time(), datetime.now(UTC),
                          images[i % len(images)])  # fmt: skip
            sink.put(GatedFrame(frame, MotionResult(True, 0.1, None), "motion", 1))
        assert sink.flush(120) and sink.published == want, "frames not published"
        cfg = config(directory, nats, ARGS.cameras, backlog=True)
        scorers: list[Process] = []
        with stopping(scorers):
            scorers += start_workers(workers, cfg, log, ARGS.batch_seconds)
            marks: dict[float, float] = {}
            cpu: dict[float, dict[str, float]] = {}
            deadline = time.monotonic() + 60 + 4 * want * ARGS.batch_seconds / ARGS.batch
            while time.monotonic() < deadline:
                assert link.js is not None
                info = link.call(link.js.stream_info("HAZARDWATCH_SCORES"))
                done = int(info.state.messages)
                for share in (0.2, 0.9):
                    if share not in marks and done >= share * want:
                        marks[share] = time.monotonic()
                        cpu[share] = {
                            "workers": sum(p.cpu() for p in scorers),
                            "nats": nats.process.cpu(),
                        }
                if done >= want:
                    break
                time.sleep(0.02)
            if len(marks) < 2:
                raise RuntimeError(f"{workers} worker(s) scored {done} of {want} frames in time")
            frames = 0.7 * want
            return Throughput(
                frames / (marks[0.9] - marks[0.2]),
                {k: 1000 * (cpu[0.9][k] - cpu[0.2][k]) / frames for k in cpu[0.9]},
            )
    finally:
        link.stop()
        nats.process.stop()


@dataclass
class Live:
    frames: float = 0.0
    frames_per_s: float = 0.0
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    broker_bytes_per_frame: float | None = None
    cpu_ms_per_frame: dict[str, float] = field(default_factory=dict)
    # Minor page faults per frame: a role that maps its per-frame buffers in afresh.
    faults_per_frame: dict[str, float] = field(default_factory=dict)
    stale: float = 0.0
    # CPU ms per second of the roles with nothing to do (before capture starts): what the
    # processes cost whatever the frame rate (the events service's stands against the
    # single process's own; the workers' and nats-server's are the distributed mode's).
    idle_cpu_ms_per_s: dict[str, float] = field(default_factory=dict)


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Linear interpolation inside cumulative histogram buckets (as PromQL does)."""
    buckets = sorted(buckets)
    count = buckets[-1][1] if buckets else 0.0
    if count <= 0:
        return None
    rank = q * count
    lower, below = 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= rank:
            if upper == float("inf"):
                return lower
            inside = cumulative - below
            return lower + (upper - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = upper, cumulative
    return lower


def latency_buckets(metrics: dict[str, list[tuple[dict[str, str], float]]]) -> dict[float, float]:
    return {
        float(labels["le"]): value
        for labels, value in metrics.get("hazardwatch_frame_latency_seconds_bucket", [])
    }


def live(workers: int, directory: Path, log: Path) -> tuple[Live, Live]:
    """Capture, `workers` workers and the events service on live (looped) cameras, and
    `hazardwatch run` on the same cameras at the same time: the machine's drift (CPU
    times here move by 10-20 % over minutes) then hits both sides of the comparison alike.
    Returns the distributed roles' figures and the single process's."""
    nats = Nats(directory / "nats")
    cfg = config(directory, nats, ARGS.cameras, backlog=False)
    events_port = yaml.safe_load(cfg.read_text())["api"]["port"]
    hw = [sys.executable, "-m", "hazardwatch"]
    processes = [nats.process]
    with stopping(processes):
        processes.append(launch("events", [*hw, "events", "--config", str(cfg)], events_port, log))
        wait_ready(events_port)
        scorers = start_workers(workers, cfg, log, ARGS.live_batch_seconds)
        processes += scorers
        idle = idle_cpu({"workers": scorers, "events": [processes[1]], "nats": [nats.process]})
        capture_port = free_port()
        capture_args = [*hw, "capture", "--config", str(cfg), "--api-port", str(capture_port)]
        capture = launch("capture", capture_args, capture_port, log)
        processes.append(capture)
        one = start_single(directory / "single", log)
        processes.append(one)
        wait_ready(capture_port)
        wait_ready(one.port or 0)
        time.sleep(ARGS.warmup)
        roles = {"capture": [capture], "workers": scorers, "events": [processes[1]],
                 "nats": [nats.process]}  # fmt: skip

        def snapshot() -> tuple[float, dict[str, tuple[float, int]], float, dict[float, float],
                                float, Any]:  # fmt: skip
            scored = sum(total(scrape(w.port or 0), "hazardwatch_frames_scored_total")
                         for w in scorers)  # fmt: skip
            cpu = {role: (sum(p.cpu() for p in group), sum(p.faults() for p in group))
                   for role, group in roles.items()}  # fmt: skip
            events = scrape(events_port)
            stale = sum(
                total(scrape(w.port or 0), "hazardwatch_frames_dropped_total") for w in scorers
            )
            alone = scrape(one.port or 0)
            single_side = (
                total(alone, "hazardwatch_frames_scored_total"),
                (one.cpu(), one.faults()),
                latency_buckets(alone),
            )
            return scored, cpu, nats.traffic(), latency_buckets(events), stale, single_side

        before, after, elapsed = window(snapshot)
    frames = after[0] - before[0]
    result = Live(frames=frames, frames_per_s=frames / elapsed, stale=after[4] - before[4])
    result.idle_cpu_ms_per_s = idle
    if frames:
        result.broker_bytes_per_frame = (after[2] - before[2]) / frames
        result.cpu_ms_per_frame = {
            role: 1000 * (after[1][role][0] - before[1][role][0]) / frames for role in after[1]
        }
        result.faults_per_frame = {
            role: (after[1][role][1] - before[1][role][1]) / frames for role in after[1]
        }
        latencies(result, before[3], after[3])
    return result, single_result(before[5], after[5], elapsed)


def idle_cpu(roles: dict[str, list[Process]]) -> dict[str, float]:
    """CPU ms per second of each role over `--idle-seconds` with no frames coming."""
    time.sleep(2.0)  # past start-up
    before = {role: sum(p.cpu() for p in group) for role, group in roles.items()}
    started = time.monotonic()
    time.sleep(ARGS.idle_seconds)
    elapsed = time.monotonic() - started
    return {
        role: 1000 * (sum(p.cpu() for p in group) - before[role]) / elapsed
        for role, group in roles.items()
    }


def window(snapshot: Callable[[], S]) -> tuple[S, S, float]:
    """Snapshots at the start and the end of the measurement window, and its length."""
    before = snapshot()
    started = time.monotonic()
    time.sleep(ARGS.seconds)
    after = snapshot()
    return before, after, time.monotonic() - started


def latencies(result: Live, before: dict[float, float], after: dict[float, float]) -> None:
    delta = [(le, after[le] - before.get(le, 0.0)) for le in after]
    result.latency_p50_s = quantile(delta, 0.5)
    result.latency_p95_s = quantile(delta, 0.95)


def start_single(directory: Path, log: Path) -> Process:
    """`hazardwatch run` in one process, same cameras and fake encoder."""
    cfg = config(directory, None, ARGS.cameras, backlog=False)
    port = yaml.safe_load(cfg.read_text())["api"]["port"]
    args = [sys.executable, __file__, "--role", "single", "--config", str(cfg),
            "--batch-seconds", str(ARGS.live_batch_seconds)]  # fmt: skip
    return launch("single", args, port, log)


def single_result(before: Any, after: Any, elapsed: float) -> Live:
    """The single process's figures from two (scored, cpu, latency buckets) snapshots."""
    frames = after[0] - before[0]
    result = Live(frames=frames, frames_per_s=frames / elapsed)
    if frames:
        result.cpu_ms_per_frame = {"single": 1000 * (after[1][0] - before[1][0]) / frames}
        result.faults_per_frame = {"single": (after[1][1] - before[1][1]) / frames}
        latencies(result, before[2], after[2])
    return result


# ---------------------------------------------------------------------------- roles


def capture_costs(directory: Path) -> dict[str, float]:
    """CPU ms per gated frame of the capture side alone, each in its own process on the
    same cameras: readers, gates and samplers with a sink that drops the frames (what one
    process also does), plus the JPEG encode, plus publishing to a nats-server."""
    nats = Nats(directory / "nats")
    out = {}
    try:
        for sink in ("none", "encode", "publish"):
            args = [sys.executable, __file__, "--role", "capture-cost", "--sink", sink,
                    "--nats-url", nats.url]  # fmt: skip
            done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)
            out[sink] = float(done.stdout.strip().splitlines()[-1])
    finally:
        nats.process.stop()
    return out


def run_capture_cost() -> int:
    """One `capture_costs` measurement: prints CPU ms per gated frame."""
    from hazardwatch.capture.fleet import CameraFleet
    from hazardwatch.components import camera_builder
    from hazardwatch.handoff.codec import encode_gated
    from hazardwatch.settings import Settings

    cv2.setNumThreads(1)  # as every role does
    cameras = [{"name": f"cam{i}", "url": str(VIDEO), "loop": True}
               for i in range(1, ARGS.cameras + 1)]  # fmt: skip
    settings = Settings.model_validate({"cameras": cameras})
    link = None

    def publish(item: GatedFrame) -> None:  # --sink none: dropped
        pass

    if ARGS.sink == "encode":

        def publish(item: GatedFrame) -> None:
            encode_gated(item)

    elif ARGS.sink == "publish":
        link = BrokerLink(ARGS.nats_url, "bench-capture")
        link.start()
        layout = FramesLayout(max_age_s=10, ack_wait_s=2.0)
        ensure_frames_stream(link, layout)
        publish = JetStreamSink(link, layout).put  # type: ignore[assignment]
    count = [0]

    class Sink:
        def put(self, item: GatedFrame) -> None:
            count[0] += 1
            publish(item)

    fleet = CameraFleet(camera_builder(settings, Sink()), 10.0)
    fleet.build(settings.cameras)
    fleet.start()
    time.sleep(ARGS.warmup)

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    before, frames = cpu(), count[0]
    time.sleep(ARGS.seconds)
    used, frames = cpu() - before, count[0] - frames
    fleet.stop()
    if link is not None:
        link.stop()
    print(1000 * used / max(frames, 1))
    return 0


def run_role() -> int:
    from hazardwatch.app import Service
    from hazardwatch.lifecycle import install_signal_handlers
    from hazardwatch.redact import configure_logging
    from hazardwatch.roles import WorkerNode
    from hazardwatch.settings import load_settings

    settings = load_settings(ARGS.config)
    configure_logging(settings.log_level)

    def encoder(_settings: Any) -> Any:
        return BatchSleepEncoder(ARGS.batch_seconds)

    node: Any
    if ARGS.role == "worker":
        node = WorkerNode(settings, encoder_factory=encoder, api_port=ARGS.api_port)
    else:
        node = Service(settings, encoder_factory=encoder)
    install_signal_handlers(node)
    node.run()
    return 0


def codec_costs(rounds: int = 200) -> dict[str, dict[str, float]]:
    """CPU ms and minor page faults per frame of the wire format alone: capture's JPEG
    encode, the worker's envelope and its pixels (decoded at the size a 224-pixel model
    needs), its scores message (the JPEG passed on as it came), and the events service's
    envelope (its pixels are decoded only for an event's snapshot and clip). Then the
    worker's decode and OpenCV's reader, which the codec used before, each in a fresh
    process as a worker is (in this one, what was allocated so far decides whether
    OpenCV's buffers are mapped in afresh)."""
    from hazardwatch.handoff.codec import decode_gated, decode_scored, encode_gated, encode_scored
    from hazardwatch.images import decode_at_least
    from hazardwatch.records import ScoredFrame
    from hazardwatch.scoring.bank import load_bank

    bank = load_bank(None)
    images = footage(20)
    gated = [
        GatedFrame(Frame("cam1", i, time.time(), datetime.now(UTC), image),
                   MotionResult(True, 0.1, None), "motion", 1)
        for i, image in enumerate(images)
    ]  # fmt: skip
    probs = dict.fromkeys(bank.class_names, 0.1)
    sims = np.zeros(len(bank.prompts), np.float32)

    wire = [encode_gated(g) for g in gated]
    received = [decode_gated(w) for w in wire]
    scored = [encode_scored(ScoredFrame(r, probs, sims, bank)) for r in received]
    steps: dict[str, tuple[Callable[[Any], Any], list[Any]]] = {
        "encode_gated": (encode_gated, gated),
        "decode_gated": (decode_gated, wire),
        "worker_pixels": (lambda r: decode_at_least(r.wire_image, 224), received),
        "encode_scored": (lambda r: encode_scored(ScoredFrame(r, probs, sims, bank)), received),
        "decode_scored": (lambda d: decode_scored(d, lambda v: bank), scored),
    }
    out: dict[str, dict[str, float]] = {"ms": {}, "faults": {}}
    for name, (step, items) in steps.items():
        out["ms"][name], out["faults"][name] = per_call(step, items, rounds)
    for decoder in ("simplejpeg", "opencv"):
        args = [sys.executable, __file__, "--role", "decode-cost", "--decoder", decoder]
        done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)
        spent, faults = done.stdout.split()
        out["ms"][f"fresh_process_decode_{decoder}"] = float(spent)
        out["faults"][f"fresh_process_decode_{decoder}"] = float(faults)
    return out


def run_decode_cost(rounds: int = 200) -> int:
    """One fresh-process decode measurement: prints CPU ms and minor faults per frame."""
    from hazardwatch.images import decode_at_least

    wire = [cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
            for image in footage(20)]  # fmt: skip
    if ARGS.decoder == "opencv":

        def decode(data: bytes) -> Any:
            return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    else:

        def decode(data: bytes) -> Any:
            return decode_at_least(data, 224)

    decode(wire[0])
    spent, faults = per_call(decode, wire, rounds)
    print(f"{spent} {faults}")
    return 0


def per_call(step: Callable[[Any], Any], items: list[Any], rounds: int) -> tuple[float, float]:
    """CPU ms and minor page faults of this process per call of `step`, over `rounds`
    calls cycling through `items`."""
    started, mapped = time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for i in range(rounds):
        step(items[i % len(items)])
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - mapped
    return 1000 * (time.process_time() - started) / rounds, faults / rounds


def main() -> int:
    if ARGS.role == "capture-cost":
        return run_capture_cost()
    if ARGS.role == "decode-cost":
        return run_decode_cost()
    if ARGS.role:
        return run_role()
    counts = [int(n) for n in ARGS.workers.split(",")]
    report: dict[str, Any] = {
        "cameras": ARGS.cameras,
        "batch": ARGS.batch,
        "batch_seconds": ARGS.batch_seconds,
        "live_batch_seconds": ARGS.live_batch_seconds,
        "fake_capacity_per_worker_fps": ARGS.batch / ARGS.batch_seconds,
        "cpu": {"cores": os.cpu_count(), "flags": cpu_flags()},
        "nats_gogc": ARGS.nats_gogc,
        "workers": {},
    }
    with tempfile.TemporaryDirectory(prefix="hw-scale-") as tmp:
        root = Path(tmp)
        log = root / "roles.log"
        codec_report = codec_costs()
        report["codec_ms_per_frame"] = codec_report["ms"]
        report["codec_faults_per_frame"] = codec_report["faults"]
        report["capture_ms_per_gated_frame"] = capture_costs(root / "capture-cost")
        singles: dict[int, Live] = {}
        for n in counts:
            saturated = throughput(n, root / f"throughput-{n}", log)
            result, singles[n] = live(n, root / f"live-{n}", log)
            report["workers"][n] = {
                "throughput_fps": saturated.frames_per_s,
                "saturated_cpu_ms_per_frame": saturated.cpu_ms_per_frame,
                **asdict(result),
                "single_process_cpu_ms_per_frame": singles[n].cpu_ms_per_frame.get("single"),
            }
            if not ARGS.json:
                cpu = ", ".join(f"{k} {v:.2f}" for k, v in saturated.cpu_ms_per_frame.items())
                print(
                    f"{n} worker(s): {saturated.frames_per_s:.1f} frames/s (CPU ms/frame "
                    f"saturated: {cpu}); live: {_line(result)}",
                    flush=True,
                )
        one = singles[counts[0]]
        report["single_process"] = asdict(one)
        base = report["workers"][counts[0]]["throughput_fps"]  # speed-up over the first count
        for n in counts:
            report["workers"][n]["speedup"] = report["workers"][n]["throughput_fps"] / base
        overhead, fixed = {}, {}
        for n in counts:
            row = report["workers"][n]
            one_cpu = row["single_process_cpu_ms_per_frame"]
            if row["cpu_ms_per_frame"] and one_cpu is not None:
                overhead[n] = sum(row["cpu_ms_per_frame"].values()) - one_cpu
                idle = row["idle_cpu_ms_per_s"]
                fixed[n] = (idle.get("workers", 0.0) + idle.get("nats", 0.0)) / row["frames_per_s"]
        report["broker_overhead_cpu_ms_per_frame"] = overhead
        # Of it, the extra processes' idle cost spread over the frame rate, and the rest:
        # what each frame costs on top (encode, publish, fetch, acks, the server's work).
        report["broker_overhead_fixed_ms_per_frame"] = fixed
        report["broker_overhead_per_frame_ms"] = {n: overhead[n] - fixed[n] for n in overhead}
        # Of what each frame costs on top, the JPEG the design puts in every message: its
        # encode on the capture node and its decode on the worker (the wire format alone,
        # timed in this process); the rest is messaging: publish, fetch, acks, nats-server.
        codec = report["codec_ms_per_frame"]
        jpeg = codec["encode_gated"] + codec["worker_pixels"]
        report["broker_overhead_jpeg_ms_per_frame"] = jpeg
        report["broker_overhead_messaging_ms_per_frame"] = {
            n: overhead[n] - fixed[n] - jpeg for n in overhead
        }
        if ARGS.keep_log:
            report["log"] = log.read_text()[-4000:]
    if ARGS.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"one process: {_line(one)}")
        codec = ", ".join(f"{k} {v:.2f}" for k, v in report["codec_ms_per_frame"].items())
        print(f"wire format alone, CPU ms per frame: {codec}")
        capture = ", ".join(f"{k} {v:.2f}" for k, v in report["capture_ms_per_gated_frame"].items())
        print(f"capture side alone, CPU ms per gated frame, by sink: {capture}")
        for n, ms in overhead.items():
            one_cpu = report["workers"][n]["single_process_cpu_ms_per_frame"]
            print(f"broker overhead with {n} worker(s): {ms:.2f} ms CPU per frame end to end "
                  f"(one process beside them: {one_cpu:.2f}); "
                  f"{fixed[n]:.2f} of it the idle workers and nats-server spread over the "
                  f"frames, {ms - fixed[n]:.2f} per frame on top: the JPEG {jpeg:.2f}, "
                  f"messaging {ms - fixed[n] - jpeg:.2f}")  # fmt: skip
        print(f"CPU: {report['cpu']}")
    return 0


def _line(r: Live) -> str:
    cpu = ", ".join(f"{k} {v:.2f}" for k, v in r.cpu_ms_per_frame.items())
    p50 = f"{r.latency_p50_s:.2f}" if r.latency_p50_s is not None else "-"
    p95 = f"{r.latency_p95_s:.2f}" if r.latency_p95_s is not None else "-"
    size = f"{r.broker_bytes_per_frame / 1000:.1f} KB" if r.broker_bytes_per_frame else "-"
    return (
        f"{r.frames_per_s:.1f} frames/s, p50 {p50} s, p95 {p95} s, broker {size}/frame, "
        f"CPU ms/frame: {cpu}"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4,8", help="worker counts, comma-separated")
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8, help="frames per batch")
    parser.add_argument(
        "--batch-seconds", type=float, default=0.4, help="the fake's sleep per batch (throughput)"
    )
    parser.add_argument(
        "--live-batch-seconds", type=float, default=0.05,
        help="the fake's sleep per batch in the live phase (a GPU's time for a batch)",
    )  # fmt: skip
    parser.add_argument("--frames-per-worker", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=20.0, help="live measurement window")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument(
        "--idle-seconds", type=float, default=10.0,
        help="how long the roles' idle CPU is measured before capture starts",
    )  # fmt: skip
    parser.add_argument(
        "--nats-gogc", type=int, default=400,
        help="GOGC of the private nats-server (docker-compose.yml's; Go's default is 100)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep-log", action="store_true", help="append the roles' log tail")
    parser.add_argument(
        "--role", choices=["worker", "single", "capture-cost", "decode-cost"],
        help=argparse.SUPPRESS,
    )  # fmt: skip
    parser.add_argument("--decoder", choices=["simplejpeg", "opencv"], help=argparse.SUPPRESS)
    parser.add_argument("--sink", choices=["none", "encode", "publish"], help=argparse.SUPPRESS)
    parser.add_argument("--nats-url", help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--api-port", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


ARGS = parse_args()

if __name__ == "__main__":
    sys.exit(main())
