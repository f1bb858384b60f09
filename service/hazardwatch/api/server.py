"""Runs the API with uvicorn on a thread of `hazardwatch run`, and stops it."""

from __future__ import annotations

import logging
import threading
import time

import uvicorn
from fastapi import FastAPI

from hazardwatch.errors import HazardwatchError

log = logging.getLogger(__name__)


class ApiServer:
    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self.host = host
        self.port = port
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="api-server", daemon=True)
        self._error: BaseException | None = None

    def _serve(self) -> None:
        try:
            self._server.run()
        except BaseException as exc:  # uvicorn exits with SystemExit when it cannot bind
            self._error = exc

    def start(self, timeout: float = 10.0) -> None:
        """Start serving; raises HazardwatchError if the port cannot be bound."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise HazardwatchError(
                    f"the API could not listen on {self.host}:{self.port} (port in use or not "
                    "allowed?); choose another with --api-port or api.port"
                )
            time.sleep(0.02)
        log.info("API listening on http://%s:%d (docs at /docs)", self.host, self.port)

    def stop(self, timeout: float = 5.0) -> bool:
        self._server.should_exit = True
        self._thread.join(timeout)
        return not self._thread.is_alive()
