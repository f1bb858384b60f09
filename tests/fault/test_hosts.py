"""The roles on several hosts: network namespaces joined by veth pairs (iproute2, as root).

nats-server runs in a namespace of its own, the hub: the capture node and two workers each
sit in a namespace with one link to it, and the events service with MariaDB stays in the
root namespace with a link of its own. No forwarding or bridge is needed, so the host's
firewall never sees the traffic. Events arrive; then one worker's link is cut for 10 s —
it reconnects by itself, and every frame the broker acknowledged is scored exactly once.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from nats.js.errors import NotFoundError
from sqlalchemy.exc import SQLAlchemyError

from hazardwatch.handoff.link import BrokerLink, consumer_lag
from hazardwatch.storage.engine import create_engine
from hazardwatch.storage.repository import Repository
from tests.conftest import REPO_ROOT, skip_or_fail
from tests.fault.test_broker import scored_in_stream
from tests.helpers import wait_for

pytestmark = [pytest.mark.fault, pytest.mark.slow]
ROLES = ("cap", "w1", "w2", "root")  # one link to the broker's namespace each


def ip(*args: str, namespace: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    subprocess.run([*prefix, "ip", *args], check=True, capture_output=True, timeout=10)


@dataclass
class Hosts:
    prefix: str

    def ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    def broker_address(self, role: str) -> str:
        """The broker's address on `role`'s link."""
        return f"10.77.{ROLES.index(role) + 1}.1"

    def link(self, role: str) -> str:
        """The role's end of its link (cut it to isolate the role)."""
        return f"{self.prefix}r{ROLES.index(role) + 1}"

    def exec(self, role: str) -> list[str]:
        return [] if role == "root" else ["ip", "netns", "exec", self.ns(role)]


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    if os.geteuid() != 0:
        skip_or_fail("network namespaces need root (ip netns add)")
    hosts = Hosts(f"hw{os.getpid() % 100000}")
    made: list[str] = []
    try:
        for role in ("nats", *ROLES[:-1]):
            ip("netns", "add", hosts.ns(role))
            made.append(hosts.ns(role))
            ip("link", "set", "lo", "up", namespace=hosts.ns(role))
        for i, role in enumerate(ROLES, start=1):
            hub, end = f"{hosts.prefix}n{i}", hosts.link(role)
            ip("link", "add", hub, "type", "veth", "peer", "name", end)
            ip("link", "set", hub, "netns", hosts.ns("nats"))
            ip("addr", "add", f"10.77.{i}.1/24", "dev", hub, namespace=hosts.ns("nats"))
            ip("link", "set", hub, "up", namespace=hosts.ns("nats"))
            if role != "root":
                ip("link", "set", end, "netns", hosts.ns(role))
            namespace = None if role == "root" else hosts.ns(role)
            ip("addr", "add", f"10.77.{i}.2/24", "dev", end, namespace=namespace)
            ip("link", "set", end, "up", namespace=namespace)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        skip_or_fail(f"network namespaces cannot be made here: {exc}")
    try:
        yield hosts
    finally:
        # Deleting a namespace deletes its veth ends, and with them their peers.
        for name in made:
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", hosts.link("root")], check=False, capture_output=True)


def pulling(link: BrokerLink) -> int:
    """Workers with a pull request waiting on the scoring consumer."""
    assert link.js is not None
    try:
        info = link.call(link.js.consumer_info("HAZARDWATCH_FRAMES", "scoring"))
    except NotFoundError:
        return 0
    return int(info.num_waiting or 0)


def reachable(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def test_roles_on_namespaced_hosts_survive_a_cut_link(
    hosts: Hosts, tmp_path: Path, red_clip: Path, mysql_url: str
) -> None:
    def start(role: str, args: list[str], log: str) -> subprocess.Popen[str]:
        with (tmp_path / log).open("w") as err:
            return subprocess.Popen(
                [*hosts.exec(role), *args], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                stderr=err, text=True,
            )  # fmt: skip

    def url(role: str) -> str:
        return f"nats://{hosts.broker_address(role)}:4222"

    nats = subprocess.Popen(
        ["ip", "netns", "exec", hosts.ns("nats"), "/usr/sbin/nats-server", "-js",
         "-sd", str(tmp_path / "nats"), "-a", "0.0.0.0", "-p", "4222"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    processes: list[subprocess.Popen[str]] = []
    link = BrokerLink(url("root"), "test")
    try:
        assert wait_for(lambda: reachable(hosts.broker_address("root"), 4222), 10)
        link.start()
        config = tmp_path / "capture.yaml"
        config.write_text(
            f"cameras:\n  - {{name: crash, url: '{red_clip}', loop: true}}\n"
            f"broker:\n  url: {url('cap')}\n"
        )
        role = [sys.executable, "-m", "tests.fault.run_role"]
        events = start("root", [*role, "events", url("root"), mysql_url, str(tmp_path)], "ev.log")
        # Frames live 5 s in the broker (the capture node's default max_frame_age_s).
        workers = [
            start(w, [*role, "worker", url(w), "0.05", "8", "5"], f"{w}.log") for w in ("w1", "w2")
        ]
        assert wait_for(lambda: pulling(link) >= 2, 90), "the workers did not start"
        capture = start(
            "cap", [sys.executable, "-m", "hazardwatch", "capture", "--config", str(config),
                    "--api-port", "0"], "cap.log",
        )  # fmt: skip
        processes += [events, *workers, capture]
        repo = Repository(create_engine(mysql_url))

        def stored_events() -> int:
            try:
                return len(repo.list_events(camera="crash"))
            except SQLAlchemyError:  # not migrated yet
                return 0

        assert wait_for(lambda: stored_events() >= 1, 90), "no event arrived"
        ip("link", "set", hosts.link("w1"), "down", namespace=hosts.ns("w1"))
        time.sleep(10)
        ip("link", "set", hosts.link("w1"), "up", namespace=hosts.ns("w1"))
        w1_log = tmp_path / "w1.log"
        assert wait_for(lambda: "reconnected" in w1_log.read_text(), 30), w1_log.read_text()
        time.sleep(5)  # worker 1 takes its share again
        capture.send_signal(signal.SIGTERM)
        out, _ = capture.communicate(timeout=60)
        assert capture.returncode == 0, (tmp_path / "cap.log").read_text()
        published = int(re.search(r"frames_published=(\d+)", out).group(1))  # type: ignore[union-attr]
        watched = [("HAZARDWATCH_FRAMES", "scoring"), ("HAZARDWATCH_SCORES", "events")]
        assert wait_for(
            lambda: consumer_lag(link, watched) == [("scoring", 0, 0), ("events", 0, 0)], 60
        ), consumer_lag(link, watched)
        numbers = sorted(s.gated.handoff_seq for s in scored_in_stream(link))
        for process in processes[:-1]:
            process.send_signal(signal.SIGTERM)
        summaries = [process.communicate(timeout=60)[0] for process in processes[:-1]]
    finally:
        link.stop()
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        nats.kill()
        nats.wait(10)
    # Every frame the broker acknowledged was scored, once (a frame that worker 1 held
    # when its link went down was redelivered to worker 2; a late second copy is dropped
    # by its message id), and both workers scored frames.
    assert published > 20
    missing = sorted(set(range(1, published + 1)) - set(numbers))
    assert numbers == list(range(1, published + 1)), f"missing hand-off numbers {missing}"
    per_worker = [int(re.search(r"frames_scored=(\d+)", s).group(1)) for s in summaries[1:]]  # type: ignore[union-attr]
    assert all(n > 0 for n in per_worker) and sum(per_worker) >= published
    rows = repo.list_scores(
        "crash", datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(1)
    )
    assert rows and len({(r.ts, r.class_name) for r in rows}) == len(rows)
