"""A stranger on the network holding hundreds of slow connections (request headers
trickled a line at a time) must not stop alerting: the service runs with a low
file-descriptor limit, health answers, events keep their snapshots and webhooks, and the
log stays small (issue 30.1)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from hazardwatch.storage.engine import create_engine
from hazardwatch.storage.repository import Repository
from tests.conftest import free_port
from tests.helpers import WebhookReceiver, wait_for

pytestmark = pytest.mark.fault

ROOT = Path(__file__).resolve().parents[2]
FD_LIMIT = 256  # hard too: the service cannot raise it
PRLIMIT = shutil.which("prlimit") or "/usr/bin/prlimit"  # util-linux
SLOW_CLIENTS = 400
ATTACK_S = 25.0


def _slow_client(port: int) -> socket.socket | None:
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=1)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: hw\r\n")
        sock.setblocking(False)
        return sock
    except OSError:
        return None


def test_hundreds_of_slow_connections_do_not_stop_health_events_or_alerts(
    tmp_path: Path, red_clip: Path
) -> None:
    receiver = WebhookReceiver(free_port()).start()
    port = free_port()
    data = tmp_path / "data"
    log_path = tmp_path / "service.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAZARDWATCH_")}
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [PRLIMIT, f"--nofile={FD_LIMIT}:{FD_LIMIT}", sys.executable, "-m",
             "tests.fault.run_fake", str(data), str(port), "--loop", "--webhook", receiver.url,
             str(red_clip)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log_file,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    slow: list[socket.socket] = []
    health: list[float | None] = []
    try:
        assert wait_for(lambda: _status(base + "/healthz") == 200, 60)
        started = time.time()
        deadline = time.monotonic() + ATTACK_S
        next_check = 0.0
        while time.monotonic() < deadline:
            # The attacker: keep SLOW_CLIENTS connections open, each sending one more header
            # line now and then; the service closes some, they come back.
            alive = []
            for sock in slow:
                try:
                    sock.send(b"X-Slow: 1\r\n")
                    alive.append(sock)
                except OSError:
                    sock.close()
            slow = alive
            while len(slow) < SLOW_CLIENTS:
                sock = _slow_client(port)
                if sock is None:
                    break
                slow.append(sock)
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + 1.0
                began = time.monotonic()
                ok = _status(base + "/healthz", timeout=3) == 200
                health.append(time.monotonic() - began if ok else None)
            time.sleep(0.2)
        # Events made during the attack were stored with their snapshots and alerted.
        repo = Repository(create_engine(f"sqlite:///{data / 'hazardwatch.db'}"))
        during = [e for e in repo.list_events() if e.started_at.timestamp() >= started]
        alerted = {r.json()["event"]["uuid"] for r in receiver.received}
    finally:
        for sock in slow:
            sock.close()
        process.terminate()
        process.wait(30)
        receiver.stop()
    size = log_path.stat().st_size
    answered = [h for h in health if h is not None]
    slowest = max(answered, default=0.0)
    print(f"{SLOW_CLIENTS} slow clients, {FD_LIMIT} descriptors, {ATTACK_S:g} s: "
          f"{len(answered)}/{len(health)} health checks answered, slowest {slowest:.2f} s; "
          f"{len(during)} event(s) made; log {size} bytes")  # fmt: skip
    failed = [i for i, h in enumerate(health) if h is None]
    assert len(health) >= 15 and not failed, f"/healthz failed at checks {failed} of {len(health)}"
    assert max(h for h in health if h is not None) < 2.0
    assert during, "no event during the attack"
    for event in during:
        assert event.snapshot_path and (data / "media" / event.snapshot_path).is_file()
    assert {e.uuid for e in during} & alerted, "no webhook for an event made during the attack"
    assert size < 200_000, f"{size} bytes of log in {ATTACK_S:g} s"
    assert "Too many open files" not in log_path.read_text()


def _status(url: str, timeout: float = 2.0) -> int | None:
    try:
        return httpx.get(url, timeout=timeout).status_code
    except httpx.HTTPError:
        return None
