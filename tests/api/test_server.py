"""The API's connection guard (issue 30.1): deadlines for a request to arrive, a cap on
open connections that sheds the longest-idle first, repeated log lines held back."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI, Request

from hazardwatch.api.server import (
    ACCEPT_BURST,
    FD_RESERVE,
    ApiServer,
    RepeatFilter,
    connection_cap,
)
from hazardwatch.settings import ApiSettings
from tests.conftest import free_port


@pytest.fixture
def server() -> Iterator[ApiServer]:
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    limits = ApiSettings(header_timeout_s=0.5, request_timeout_s=1.5, max_connections=20)
    api = ApiServer(app, "127.0.0.1", free_port(), limits)
    api.start()
    yield api
    api.stop()


def _open(api: ApiServer, first: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", api.port), timeout=5)
    sock.sendall(first)
    return sock


def _closed(sock: socket.socket, within_s: float) -> float | None:
    """Seconds until the server closed the connection, None if it did not in time."""
    began = time.monotonic()
    sock.settimeout(within_s)
    try:
        while True:
            if not sock.recv(4096):
                return time.monotonic() - began
    except (ConnectionResetError, BrokenPipeError):
        return time.monotonic() - began
    except TimeoutError:
        return None


def test_headers_that_trickle_in_are_cut_off_at_the_header_deadline(server: ApiServer) -> None:
    sock = _open(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    took = _closed(sock, 3.0)
    assert took is not None and took < 1.5
    sock.close()


def test_a_body_that_trickles_in_is_cut_off_at_the_request_deadline(server: ApiServer) -> None:
    sock = _open(server, b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
    for _ in range(3):  # past the header deadline, within the request's
        sock.sendall(b"x")
        time.sleep(0.3)
    took = _closed(sock, 3.0)
    assert took is not None and took < 1.5
    sock.close()


def test_a_keep_alive_connection_gets_the_header_deadline_again(server: ApiServer) -> None:
    sock = _open(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"200 OK" in sock.recv(4096)
    assert _closed(sock, 3.0) is not None
    sock.close()


def test_over_the_cap_the_longest_idle_goes_and_a_new_client_is_served(server: ApiServer) -> None:
    idle = [_open(server, b"GET /healthz HTTP/1.1\r\n") for _ in range(server.cap + 10)]
    time.sleep(0.2)
    assert httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=2).status_code == 200
    assert _closed(idle[0], 1.0) is not None  # the oldest was shed at once
    assert server.shed >= 10
    for sock in idle:
        sock.close()


def test_the_cap_stays_below_the_descriptor_limit() -> None:
    assert connection_cap(256, 1024) == 256
    assert connection_cap(256, 256) == 256 - FD_RESERVE - ACCEPT_BURST
    assert connection_cap(256, 100) == 8  # never none at all


def test_a_flood_of_one_message_is_logged_once_a_minute_with_a_count() -> None:
    repeats = RepeatFilter(interval_s=0.5)
    logger = logging.getLogger("test.flood")
    records = [logger.makeRecord("test.flood", logging.ERROR, __file__, 1, "accept failed: %s",
                                 (i,), None) for i in range(1000)]  # fmt: skip
    passed = [r for r in records if repeats.filter(r)]
    assert len(passed) == 1
    time.sleep(0.6)
    later = logger.makeRecord("test.flood", logging.ERROR, __file__, 1, "accept failed: %s",
                              ("x",), None)  # fmt: skip
    assert repeats.filter(later) and "999 more like it" in later.getMessage()


def test_uvicorns_own_log_goes_through_the_services_redacting_json_handler(
    server: ApiServer, capfd: pytest.CaptureFixture[str]
) -> None:
    """Issue 30.4: uvicorn's error log bypassed the redaction and the JSON format."""
    import json

    from hazardwatch.redact import configure_logging

    configure_logging("INFO", "json")
    try:
        logging.getLogger("uvicorn.error").error("cannot open rtsp://op:hunter2@cam/s")
        line = capfd.readouterr().err.strip().splitlines()[-1]
    finally:
        configure_logging("INFO")
    record = json.loads(line)
    assert record["logger"] == "uvicorn.error" and "hunter2" not in line
    assert "op:***@cam" in record["message"]
