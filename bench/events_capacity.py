"""Benchmark: how many scored frames a second one events service handles, and where its
CPU goes (issue 27, item 6).

Synthetic scored frames for many cameras (1,000 by default) are published straight into
the scores stream of a private `nats-server -js`, in the wire format the workers use
(`encode_scored`: probabilities, prompt similarities, embedding and a real JPEG of the
shared footage), and `hazardwatch events` consumes them with the real detector stage,
keyframes, score rows and MariaDB writes (a database of its own, dropped after). Each
camera's class probabilities are a level of its own with a slow random walk and noise on
it: normal footage (no event opens), so the work measured is the steady state's.

Phases 1–3 run one events process on one partition; phase 4 one and two processes:

1. **Saturation.** A backlog (`--backlog` frames, round-robin over the cameras, 2 s apart
   per camera) is published before the service starts; the service drains it. Frames/s
   is the backlog over the time from the first ack to the last (start-up left out); CPU
   per frame is the process's CPU over that time, split by thread: the scores consumer
   (fetch, decode, reorder window, detector stage, keyframe sampler), the event writer
   (score rows, keyframes, camera states: storage), the broker link's event loop
   (messaging) and the rest (API, status board, janitor). The envelope's decode, which
   runs on the consumer thread, is measured apart and moved to messaging.
2. **Live.** `--rate` frames/s (default 500: 1,000 cameras at 0.5 scored frame/s) for
   `--live-s` seconds. Score-to-stored latency: from each frame's publish to the
   consumer's ack floor passing it (the service acks a frame once what it made of it is
   stored); lost: frames published and never acked, and the service's own count of
   hand-off gaps (`hazardwatch_frames_lost_total`).
3. **Takeover.** A second events service started beside the first stands by; frames
   at `--rate` for `--takeover-s` seconds, the owner killed (SIGKILL) a third of the way
   in: seconds until the standby takes the scores over and until frames are stored
   again, frames lost, and score-to-stored latency of the frames published after the
   kill.

4. **Scale-out.** `--partitions` (default 4) partitions; one events instance, then two,
   alternated twice, each run draining a fresh backlog. Frames/s is counted from the
   moment the partitions are shared out evenly (the instances' leases) and something was
   acked, to the last ack; CPU per frame is that of every events process together.

    python bench/events_capacity.py [--cameras 1000] [--backlog 30000] [--rate 500]
                                    [--live-s 60] [--takeover-s 45] [--partitions 4]
                                    [--scale-backlog 60000] [--no-saturation] [--json]

Numbers depend on the CPU: quote the flags this prints. MySQL is the local MariaDB
(`HAZARDWATCH_TEST_MYSQL_URL`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import nats
from tests.conftest import SHARED_DIR

from hazardwatch.handoff.codec import decode_scored, encode_scored
from hazardwatch.handoff.frames import message_id
from hazardwatch.handoff.link import BrokerLink
from hazardwatch.handoff.scores import ScoresLayout, ensure_scores_stream
from hazardwatch.records import Frame, GatedFrame, MotionResult, ScoredFrame
from hazardwatch.scoring.bank import PromptBank, load_bank
from procs import Process, cpu_flags, cpu_seconds, free_port, nats_server, scrape, total, wait_ready
from score_rows import database
from wire_size import frames as footage

REPO = Path(__file__).resolve().parents[1]
VIDEO = SHARED_DIR / "data" / "videos" / "car-detection.mp4"
SPACING_S = 2.0  # one camera's scored frames this far apart (0.5 scored frame/s)
THREAD_KINDS = {
    "scores-consumer": "consumer",
    "event-writer": "storage",
    "nats-events": "messaging",
}


# ---------------------------------------------------------------- the scored frames


@dataclass
class Cameras:
    """Per camera: a band level, a random-walk state and the next hand-off number."""

    count: int
    bank: PromptBank
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(7))
    layout: ScoresLayout = field(default_factory=ScoresLayout)  # its subjects: partitions

    def __post_init__(self) -> None:
        classes = len(self.bank.class_names)
        self.level = self.rng.uniform(-4.0, -1.0, (self.count, classes))
        self.walk = np.zeros((self.count, classes))
        self.seq = np.zeros(self.count, int)
        self.jpegs = [
            cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
            for image in footage(VIDEO, 20)
        ]
        self.sims = self.rng.uniform(0.15, 0.3, len(self.bank.prompts)).astype(np.float32)
        embedding = self.rng.normal(size=512).astype(np.float32)
        self.embedding = embedding / np.linalg.norm(embedding)

    def frame(self, camera: int, at: float) -> tuple[str, bytes, str]:
        """(subject, message, message id) of camera `camera`'s next scored frame at `at`."""
        self.seq[camera] += 1
        n = int(self.seq[camera])
        self.walk[camera] = 0.98 * self.walk[camera] + self.rng.normal(0, 0.05, self.walk.shape[1])
        logits = (
            self.level[camera] + self.walk[camera] + self.rng.normal(0, 0.15, self.walk.shape[1])
        )
        probabilities = dict(
            zip(self.bank.class_names, (1 / (1 + np.exp(-logits))).tolist(), strict=True)
        )
        name = f"cam{camera:04d}"
        image = self.jpegs[n % len(self.jpegs)]
        gated = GatedFrame(
            Frame(
                name, n, at, datetime.fromtimestamp(at, UTC), lambda: np.zeros((1, 1, 3), np.uint8)
            ),
            MotionResult(True, 0.1, (10, 10, 50, 50)),
            "motion",
            1,
            handoff_seq=n,
            wire_image=image,
        )
        scored = ScoredFrame(gated, probabilities, self.sims, self.bank, self.embedding)
        return self.layout.subject_for(name), encode_scored(scored), message_id(gated)


async def publish(
    url: str,
    items: Iterator[tuple[str, bytes, str]],
    pace: float | None,
    sent: dict[int, float],
    floors: list[tuple[float, int]] | None = None,
) -> None:
    """Publish every item (at `pace` per second, or as fast as the broker takes them);
    `sent` gets each stream sequence's publish time. With `floors`: the consumer's ack
    floor is sampled every 50 ms on the same connection, until it passes the last item
    (at most two minutes after the last publish)."""
    client = await nats.connect(url)
    js = client.jetstream()
    layout = ScoresLayout()
    done = asyncio.Event()

    async def watch(out: list[tuple[float, int]]) -> None:
        while not done.is_set():
            with contextlib.suppress(Exception):  # no consumer yet
                info = await js.consumer_info(layout.stream, layout.consumer)
                out.append((time.time(), int(info.ack_floor.stream_seq or 0)))
            await asyncio.sleep(0.05)

    watcher = asyncio.ensure_future(watch(floors)) if floors is not None else None
    started, n = time.monotonic(), 0
    pending: list[tuple[asyncio.Future[Any], float]] = []
    try:
        for subject, data, msg_id in items:
            if pace is not None:
                delay = started + n / pace - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            at = time.time()
            future = asyncio.ensure_future(
                js.publish(subject, data, headers={"Nats-Msg-Id": msg_id})
            )
            pending.append((future, at))
            n += 1
            if len(pending) >= 256:
                await _settle(pending, sent)
        await _settle(pending, sent)
        if floors is not None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and (not floors or floors[-1][1] < max(sent)):
                await asyncio.sleep(0.1)
    finally:
        done.set()
        if watcher is not None:
            await watcher
        await client.close()


async def _settle(pending: list[tuple[asyncio.Future[Any], float]], sent: dict[int, float]) -> None:
    for future, at in pending:
        ack = await future
        sent[int(ack.seq)] = at
    pending.clear()


async def drained(url: str, target: int, pid: int) -> tuple[float, int, dict[str, float],
                                                        dict[str, float]]:  # fmt: skip
    """Wait (one connection, polling every 50 ms) for the consumer's first ack, then for
    its ack floor to reach `target`: (seconds between, the floor at the first ack, the
    process's thread CPU at both)."""
    client = await nats.connect(url)
    js, layout = client.jetstream(), ScoresLayout()

    async def floor() -> int:
        try:
            info = await js.consumer_info(layout.stream, layout.consumer)
        except Exception:  # not made yet
            return 0
        return int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0

    try:
        first = 0
        while not first:
            await asyncio.sleep(0.02)
            first = await floor()
        t0, cpu0 = time.monotonic(), thread_cpu(pid)
        deadline = t0 + 1800
        while await floor() < target:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the backlog was not drained in {deadline - t0:.0f} s")
            await asyncio.sleep(0.05)
        return time.monotonic() - t0, first, cpu0, thread_cpu(pid)
    finally:
        await client.close()


# ---------------------------------------------------------------- the events process


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per kind of thread of one process (threads named by `run_role`)."""
    from procs import TICKS

    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kind = THREAD_KINDS.get(name, "other")
        out[kind] = out.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / TICKS
    return out


def run_role(config: str) -> int:
    """`hazardwatch events` in this process, its Python threads named in the kernel (so
    /proc shows which thread spent what)."""
    libc = ctypes.CDLL(None)
    bootstrap = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]

    def named(self: threading.Thread) -> None:
        libc.prctl(15, self.name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
        bootstrap(self)

    threading.Thread._bootstrap_inner = named  # type: ignore[attr-defined]
    from hazardwatch.cli import main

    return main(["events", "--config", config])


def write_config(
    directory: Path, nats_url: str, db_url: str, partitions: int = 1
) -> tuple[Path, int]:
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    settings: dict[str, Any] = {
        "cameras": [],
        "storage": {"database_url": db_url, "data_dir": str(directory / "data")},
        "media": {"dir": str(directory / "media")},
        "api": {"port": port},
        "broker": {"url": nats_url, "partitions": partitions},
        "log_level": "WARNING",
    }
    path = directory / "events.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path, port


def decode_ms(items: list[bytes], bank: PromptBank) -> float:
    """CPU ms of one envelope's decode (the consumer thread's messaging share)."""
    started = time.process_time()
    for data in items:
        decode_scored(data, lambda _v: bank)
    return 1000 * (time.process_time() - started) / len(items)


@dataclass
class Saturation:
    frames: int
    seconds: float
    frames_per_s: float
    cpu_ms_per_frame: float
    split_ms: dict[str, float]


@dataclass
class Live:
    rate: float
    published: int
    acked: int
    lost_by_service: float
    p50_s: float
    p95_s: float
    max_s: float
    cpu_ms_per_frame: float
    cores_used: dict[str, float]  # CPU seconds a second of each process on the machine


def saturation(nats_url: str, backlog: int, process: Process, port: int,
               decode: float) -> Saturation:  # fmt: skip
    wait_ready(port, timeout=300)
    # The clock starts at the first ack: start-up (migrations, camera states) left out.
    seconds, floor0, cpu0, cpu1 = asyncio.run(drained(nats_url, backlog, process.popen.pid))
    done = backlog - floor0
    split = {k: 1000 * (cpu1.get(k, 0.0) - cpu0.get(k, 0.0)) / done for k in cpu1}
    split["consumer"] = split.get("consumer", 0.0) - decode
    split["messaging"] = split.get("messaging", 0.0) + decode
    return Saturation(done, seconds, done / seconds, sum(split.values()), split)


def live(nats_url: str, nats_pid: int, cams: Cameras, rate: float, seconds: float,
         process: Process, port: int) -> Live:  # fmt: skip
    count = int(rate * seconds)
    sent: dict[int, float] = {}
    samples: list[tuple[float, int]] = []
    items = timed_frames(cams, rate, count)
    pids = {"events": process.popen.pid, "nats-server": nats_pid, "bench": os.getpid()}
    pids.update(("mariadbd", int(pid)) for pid in _pgrep("mariadbd")[:1])
    cpu0, wall0 = {k: cpu_seconds(pid) for k, pid in pids.items()}, time.monotonic()
    asyncio.run(publish(nats_url, iter(items), rate, sent, samples))
    wall = time.monotonic() - wall0
    used = {k: round((cpu_seconds(pid) - cpu0[k]) / wall, 2) for k, pid in pids.items()}
    cpu = cpu_seconds(process.popen.pid) - cpu0["events"]
    latencies = [latency for _, latency in stored_after(sent, samples)]
    lost = total(scrape(port), "hazardwatch_frames_lost_total")
    q = np.quantile(latencies, [0.5, 0.95]) if latencies else [float("nan")] * 2
    return Live(rate, count, len(latencies), lost, float(q[0]), float(q[1]),
                max(latencies, default=float("nan")), 1000 * cpu / count, used)  # fmt: skip


def timed_frames(cams: Cameras, rate: float, count: int) -> list[tuple[str, bytes, str]]:
    """`count` frames for publishing at `rate` from a few seconds on, encoded beforehand
    (this process shares the machine with the one measured); returns once it is time."""
    started = time.time() + 5 + count * 1e-4
    items = [cams.frame(i % cams.count, started + i / rate) for i in range(count)]
    time.sleep(max(0.0, started - time.time()))
    return items


def stored_after(
    sent: dict[int, float], floors: list[tuple[float, int]]
) -> list[tuple[float, float]]:
    """(publish time, score-to-stored seconds) of each published frame the ack floor
    passed: the first floor sample at or past its stream sequence."""
    times = np.array([t for t, _ in floors])
    passed = np.maximum.accumulate(np.array([f for _, f in floors]))
    out = []
    for seq, at in sent.items():
        i = int(np.searchsorted(passed, seq))
        if i < len(times):
            out.append((at, max(0.0, float(times[i]) - at)))
    return out


def _pgrep(name: str) -> list[str]:
    done = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True, check=False)
    return done.stdout.split()


@dataclass
class Takeover:
    rate: float
    published: int
    acked: int
    standby_took_over_s: float  # from the owner's SIGKILL to the standby's log line
    first_stored_after_s: float  # from the SIGKILL to the first frame published after it stored
    p95_after_s: float  # score-to-stored of the frames published after the kill
    max_after_s: float
    lost_by_service: float


def takeover(url: str, cams: Cameras, rate: float, seconds: float, owner: Process,
             directory: Path, db: str) -> Takeover:  # fmt: skip
    """A standby started beside the owner; frames at `rate` for `seconds`, the owner
    killed (SIGKILL) a third of the way in: how soon the standby takes over and the
    frames are stored again, and whether any is lost."""
    directory.mkdir(parents=True, exist_ok=True)
    config, port = write_config(directory, url, db)
    log = directory / "standby.log"
    count = int(rate * seconds)
    sent: dict[int, float] = {}
    samples: list[tuple[float, int]] = []
    with events_service(config, port, log) as standby:
        deadline = time.monotonic() + 120
        while "stands by" not in (log.read_text() if log.is_file() else ""):
            if time.monotonic() > deadline:
                raise RuntimeError("the second events service did not stand by")
            time.sleep(0.1)
        items = timed_frames(cams, rate, count)
        killed: list[float] = []
        took: list[float] = []

        def kill() -> None:
            owner.popen.kill()
            killed.append(time.time())
            while not took and time.time() - killed[0] < 60:
                if "took the scores over" in log.read_text():
                    took.append(time.time())
                time.sleep(0.02)

        timer = threading.Timer(seconds / 3, kill)
        timer.start()
        asyncio.run(publish(url, iter(items), rate, sent, samples))
        timer.join()
        lost = total(scrape(port), "hazardwatch_frames_lost_total")
        standby.stop(120)
    at_kill = killed[0]
    stored = stored_after(sent, samples)
    # Published after the kill, so stored by the new owner only (the floor passing a frame
    # the dead owner acked just before it died says nothing of the takeover).
    after = [(at, latency) for at, latency in stored if at > at_kill]
    first = min((at + latency for at, latency in after), default=float("nan"))
    return Takeover(rate, count, len(stored), (took[0] if took else float("nan")) - at_kill,
                    first - at_kill,
                    float(np.quantile([x for _, x in after], 0.95)) if after else float("nan"),
                    max((x for _, x in after), default=float("nan")), lost)  # fmt: skip


@dataclass
class ScaleRun:
    instances: int
    frames: int  # acked while the partitions were shared out evenly
    seconds: float
    frames_per_s: float
    cpu_ms_per_frame: float  # of every events process together
    machine_busy: float  # of the machine's cores, the fraction busy meanwhile (all of it)


@dataclass
class ScaleOut:
    partitions: int
    runs: list[ScaleRun]
    ratio: float  # two instances' frames/s over one's (the means of the alternated runs)


async def reset(url: str, layout: ScoresLayout) -> None:
    """The scores stream emptied and the events consumers deleted (between runs)."""
    client = await nats.connect(url)
    js = client.jetstream()
    try:
        await js.purge_stream(layout.stream)
        names = [layout.consumer] + [layout.consumer_of(k) for k in range(layout.partitions)]
        for name in names:
            with contextlib.suppress(Exception):
                await js.delete_consumer(layout.stream, name)
    finally:
        await client.close()


async def shared_drain(url: str, layout: ScoresLayout, target: int, instances: int,
                       pids: list[int]) -> tuple[float, int, float, float]:  # fmt: skip
    """Wait until the partitions are shared out evenly among `instances` (their leases)
    and the consumers have acked something, then until the backlog is drained: (seconds
    between, frames acked between, CPU seconds of the events processes between, the
    fraction of the machine's cores busy between)."""
    from hazardwatch.handoff.lease import LEASE_BUCKET

    client = await nats.connect(url)
    js = client.jetstream()

    async def acked() -> int:
        waiting = 0
        for k in range(layout.partitions):
            try:
                info = await js.consumer_info(layout.stream, layout.consumer_of(k))
            except Exception:  # not made yet: all of it waits
                return 0
            waiting += int(info.num_pending or 0) + int(info.num_ack_pending or 0)
        return target - waiting

    async def even() -> bool:
        try:
            kv = await js.key_value(LEASE_BUCKET)
            held = [(await kv.get(layout.lease_key(k))).value for k in range(layout.partitions)]
        except Exception:  # a lease not held (yet)
            return False
        counts = Counter(held).values()
        return len(counts) == instances and max(counts) - min(counts) <= 1

    try:
        deadline = time.monotonic() + 1800
        while not (await even() and await acked() > 0):
            if time.monotonic() > deadline:
                raise RuntimeError("the partitions were never shared out evenly")
            await asyncio.sleep(0.05)
        t0, done0 = time.monotonic(), await acked()
        cpu0, busy0 = sum(cpu_seconds(pid) for pid in pids), machine_ticks()
        while await acked() < target:
            if time.monotonic() > deadline:
                raise RuntimeError("the backlog was not drained")
            await asyncio.sleep(0.05)
        cpu = sum(cpu_seconds(pid) for pid in pids) - cpu0
        busy1 = machine_ticks()
        if target - done0 < target // 4:
            raise RuntimeError(
                f"only {target - done0} of {target} frames were left once the partitions "
                "were shared out: give a larger --scale-backlog"
            )
        busy = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
        return time.monotonic() - t0, target - done0, cpu, busy
    finally:
        await client.close()


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of every core so far (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def scale_out(url: str, bank: PromptBank, count: int, backlog: int, partitions: int,
              directory: Path, db: str) -> ScaleOut:  # fmt: skip
    """One events instance, then two, alternated twice, on `partitions` partitions: each
    run drains a fresh backlog (frame times after every earlier run's, so each writes its
    score rows anew)."""
    layout = ScoresLayout(partitions=partitions)
    cams = Cameras(count, bank, layout=layout)
    span = backlog / count * SPACING_S
    base = time.time() + 3600  # after the other phases' frames: nothing already stored
    runs = []
    for run, instances in enumerate((1, 2, 1, 2)):
        asyncio.run(reset(url, layout))
        start = base + run * (span + 10)
        frames = (cams.frame(i % count, start + (i // count) * SPACING_S) for i in range(backlog))
        asyncio.run(publish(url, frames, None, {}))
        with contextlib.ExitStack() as stack:
            processes = []
            for i in range(instances):
                config, port = write_config(directory / f"{run}-{i}", url, db, partitions)
                log = directory / f"{run}-{i}.log"
                processes.append(stack.enter_context(events_service(config, port, log)))
            pids = [p.popen.pid for p in processes]
            drain = shared_drain(url, layout, backlog, instances, pids)
            seconds, done, cpu, busy = asyncio.run(drain)
        result = ScaleRun(instances, done, seconds, done / seconds, 1000 * cpu / done, busy)
        print(_scale_line(result), flush=True)
        runs.append(result)
    one = np.mean([r.frames_per_s for r in runs if r.instances == 1])
    two = np.mean([r.frames_per_s for r in runs if r.instances == 2])
    return ScaleOut(partitions, runs, float(two / one))


@contextmanager
def broker(directory: Path) -> Iterator[tuple[str, int]]:
    """A private nats-server (Go's collector at 400, as docker-compose.yml runs it)."""
    port, http = free_port(), free_port()
    process = Process("nats", nats_server(directory, port, http, 400))
    try:
        wait_ready(http, "/varz", timeout=10)
        yield f"nats://127.0.0.1:{port}", process.popen.pid
    finally:
        process.stop()


@contextmanager
def events_service(config: Path, port: int, log: Path) -> Iterator[Process]:
    args = [sys.executable, __file__, "--role", "events", "--config", str(config)]
    with log.open("ab") as out:
        process = Process("events", subprocess.Popen(args, cwd=REPO, stdout=out, stderr=out), port)
    try:
        yield process
    finally:
        process.stop(120)


def main() -> int:
    args = ARGS
    bank = load_bank(None)
    report: dict[str, Any] = {"cpu_flags": cpu_flags(), "cameras": args.cameras}
    with tempfile.TemporaryDirectory(prefix="hw-capacity-") as tmp, database("mysql") as db:
        directory = Path(tmp)
        with broker(directory / "nats") as (url, nats_pid):
            link = BrokerLink(url, "bench")
            link.start()
            ensure_scores_stream(link, ScoresLayout())
            link.stop()
            if args.saturation:
                one_instance(url, nats_pid, bank, directory, db, report)
            if args.partitions > 1:
                scaled = scale_out(url, bank, args.cameras, args.scale_backlog,
                                   args.partitions, directory / "scale", db)  # fmt: skip
                report["scale_out"] = asdict(scaled)
                print(f"scale-out: two instances {scaled.ratio:.2f}x one", flush=True)
    print(f"CPU flags: {report['cpu_flags']}")
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


def one_instance(url: str, nats_pid: int, bank: PromptBank, directory: Path, db: str,
                 report: dict[str, Any]) -> None:  # fmt: skip
    """Saturation, live and takeover phases of one events instance (one partition)."""
    args = ARGS
    cams = Cameras(args.cameras, bank)
    log = directory / "events.log"
    start = time.time() - args.backlog / args.cameras * SPACING_S - 60
    backlog = (
        cams.frame(i % args.cameras, start + (i // args.cameras) * SPACING_S)
        for i in range(args.backlog)
    )
    t = time.monotonic()
    asyncio.run(publish(url, backlog, None, {}))
    report["backlog_publish_s"] = round(time.monotonic() - t, 1)
    other = Cameras(1, bank)  # not the published cameras: no gap in their numbers
    decode = decode_ms([other.frame(0, time.time())[1] for _ in range(200)], bank)
    report["decode_ms"] = round(decode, 3)
    config, port = write_config(directory, url, db)
    try:
        with events_service(config, port, log) as process:
            sat = saturation(url, args.backlog, process, port, decode)
            report["saturation"] = asdict(sat)
            print(_saturation_line(sat), flush=True)
            if args.live_s > 0:
                result = live(url, nats_pid, cams, args.rate, args.live_s, process, port)
                report["live"] = asdict(result)
                print(_live_line(result), flush=True)
            if args.takeover_s > 0:
                taken = takeover(url, cams, args.rate, args.takeover_s, process,
                                 directory / "standby", db)  # fmt: skip
                report["takeover"] = asdict(taken)
                print(_takeover_line(taken), flush=True)
    finally:
        if log.is_file():
            report["events_log_tail"] = log.read_text().splitlines()[-15:]


def _saturation_line(sat: Saturation) -> str:
    split = ", ".join(f"{kind} {ms:.2f}" for kind, ms in sorted(sat.split_ms.items()))
    return (
        f"saturation: {sat.frames} frames in {sat.seconds:.1f} s = {sat.frames_per_s:.0f} "
        f"frames/s; {sat.cpu_ms_per_frame:.2f} ms CPU a frame ({split})"
    )


def _live_line(result: Live) -> str:
    return (
        f"live at {result.rate:.0f} frames/s: {result.acked}/{result.published} stored, "
        f"score-to-stored p50 {result.p50_s:.2f} s, p95 {result.p95_s:.2f} s, max "
        f"{result.max_s:.2f} s; {result.lost_by_service:.0f} lost by the service's count; "
        f"{result.cpu_ms_per_frame:.2f} ms CPU a frame; cores used: "
        + ", ".join(f"{name} {cores:.2f}" for name, cores in result.cores_used.items())
    )


def _scale_line(r: ScaleRun) -> str:
    return (
        f"scale-out, {r.instances} instance(s): {r.frames} frames in {r.seconds:.1f} s = "
        f"{r.frames_per_s:.0f} frames/s; {r.cpu_ms_per_frame:.2f} ms CPU a frame; the "
        f"machine's {os.cpu_count()} cores {100 * r.machine_busy:.0f} % busy"
    )


def _takeover_line(t: Takeover) -> str:
    return (
        f"takeover at {t.rate:.0f} frames/s: the standby took the scores over "
        f"{t.standby_took_over_s:.1f} s after the owner's SIGKILL; the first frame published "
        f"after the kill was stored {t.first_stored_after_s:.1f} s after it; "
        f"{t.acked}/{t.published} stored, {t.lost_by_service:.0f} lost by its count; "
        f"frames published after the kill: score-to-stored p95 {t.p95_after_s:.1f} s, "
        f"max {t.max_after_s:.1f} s"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=int, default=1000)
    parser.add_argument("--backlog", type=int, default=30000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--live-s", type=float, default=60.0)
    parser.add_argument("--takeover-s", type=float, default=45.0,
                        help="seconds of the takeover phase (0: none)")  # fmt: skip
    parser.add_argument("--partitions", type=int, default=4,
                        help="scale-out phase: one instance then two on this many "
                        "partitions, alternated (1: no such phase)")  # fmt: skip
    parser.add_argument("--scale-backlog", type=int, default=60000,
                        help="frames each scale-out run drains (the rebalance at the start "
                        "of a two-instance run is left out of its figure)")  # fmt: skip
    parser.add_argument("--saturation", action=argparse.BooleanOptionalAction, default=True,
                        help="the saturation, live and takeover phases (--no-saturation: "
                        "the scale-out phase alone)")  # fmt: skip
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--role", choices=["events"], help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    return parser.parse_args()


ARGS = parse_args()

if __name__ == "__main__":
    if ARGS.role == "events":
        sys.exit(run_role(ARGS.config))
    sys.exit(main())
