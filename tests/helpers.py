"""Small helpers shared by tests."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """An ASGI app on a real uvicorn server on a free local port; yields its base URL."""
    import httpx
    import uvicorn

    from tests.conftest import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            httpx.get(base + "/healthz", timeout=1)
        except httpx.HTTPError:
            return False
        return True

    try:
        assert wait_for(answers, 15, interval=0.05), "the test API server did not come up"
        yield base
    finally:
        server.should_exit = True
        thread.join(10)


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # wall clock (time.time()), comparable with Frame.received_at

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 that records POSTs; answers `status` after `delay_s`.

    `stop()` then `start()` brings it back on the same port (a receiver that was down).
    """

    def __init__(
        self,
        port: int,
        status: int = 200,
        delay_s: float = 0.0,
        on_receive: Callable[[Received], None] | None = None,
    ) -> None:
        """`on_receive` runs on each accepted POST before the answer (a receiver that
        fetches the alert's links as it arrives)."""
        self.port = port
        self.status = status
        self.delay_s = delay_s
        self.on_receive = on_receive
        self.received: list[Received] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                at = time.time()
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                if receiver.status < 300:
                    got = Received(self.path, dict(self.headers), body, at)
                    if receiver.on_receive is not None:
                        receiver.on_receive(got)
                    receiver.received.append(got)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def scrape(port: int) -> dict[str, float]:
    """A running service's /metrics as {'name{label="v",…}': value} ('name' without labels)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def api_client(app: Any, **options: Any) -> Any:
    """A TestClient that names the API as a browser on this machine would (Host:
    localhost, one of the names the API answers to by default)."""
    from fastapi.testclient import TestClient

    return TestClient(app, base_url="http://localhost", **options)


def rss_mb() -> float:
    """This process's resident memory in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class PeakRss:
    """Resident memory before a block, its peak while the block runs (sampled every 5 ms on
    a thread) and after it, in MB."""

    def __enter__(self) -> PeakRss:
        self.before = self.peak = self.after = rss_mb()
        self._running = True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._running = False
        self._thread.join(5)
        self.after = rss_mb()

    def _sample(self) -> None:
        while self._running:
            self.peak = max(self.peak, rss_mb())
            time.sleep(0.005)
