"""What the benchmarks share for measuring processes: free ports, CPU time from /proc,
waiting for an HTTP port, and the CPU flags every benchmark figure is quoted with."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far (not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def minor_faults(pid: int) -> int:
    """Minor page faults of one process so far: memory the kernel had to map in, each a
    trap; a per-frame buffer freed back to the system and allocated again pays them anew."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[7])


def nats_server(store: Path, port: int, http: int, gogc: int) -> subprocess.Popen[bytes]:
    """A private `nats-server -js` on loopback, file storage under `store`, monitoring on
    `http`, Go's collector at `gogc` (docker-compose.yml runs it at 400; Go's default 100)."""
    args = ["/usr/sbin/nats-server", "-js", "-sd", str(store), "-a", "127.0.0.1",
            "-p", str(port), "-m", str(http)]  # fmt: skip
    env = {**os.environ, "GOGC": str(gogc)}
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def get(url: str, timeout: float = 2.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


def wait_ready(port: int, path: str = "/healthz", timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            get(f"http://127.0.0.1:{port}{path}")
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answered on port {port} within {timeout:g} s")


def cpu_flags() -> str:
    """The vector extensions that decide the model's speed, as /proc/cpuinfo lists them."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            have = set(line.split(":", 1)[1].split())
            wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
            return " ".join(flag for flag in wanted if flag in have) or "none of avx2/avx512"
    return ""


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(get(f"http://127.0.0.1:{port}/metrics")):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return out


def total(metrics: dict[str, list[tuple[dict[str, str], float]]], name: str) -> float:
    return sum(value for _, value in metrics.get(name, []))


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    port: int | None = None

    def cpu(self) -> float:
        return cpu_seconds(self.popen.pid)

    def faults(self) -> int:
        return minor_faults(self.popen.pid)

    def stop(self, timeout: float = 60.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
