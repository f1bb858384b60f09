"""A MariaDB server of the test's own (own data dir and port) that a test can kill and restart.

Built from the system's `mariadb-install-db` and `mariadbd`, so an outage hits a real
server without touching the shared one on :3306.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pymysql


class MariaDbInstance:
    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.datadir = root / "data"
        self.url = f"mysql+pymysql://root@127.0.0.1:{port}/hazardwatch"
        self._process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> str | None:
        """None when the binaries are there, else what to install."""
        if shutil.which("mariadbd") is None and not Path("/usr/sbin/mariadbd").exists():
            return "mariadbd is not installed (apt-get install mariadb-server)"
        if shutil.which("mariadb-install-db") is None:
            return "mariadb-install-db is not installed (apt-get install mariadb-server)"
        return None

    def install(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={self.datadir}",
             "--auth-root-authentication-method=normal", "--skip-test-db", "--user=root"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip

    def start(self, timeout_s: float = 60.0) -> None:
        mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        self._process = subprocess.Popen(
            [mariadbd, "--no-defaults", f"--datadir={self.datadir}", f"--port={self.port}",
             "--bind-address=127.0.0.1", f"--socket={self.root / 'mysqld.sock'}",
             f"--pid-file={self.root / 'mysqld.pid'}", "--user=root", "--skip-name-resolve",
             "--innodb-buffer-pool-size=32M", f"--log-error={self.root / 'error.log'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                pymysql.connect(host="127.0.0.1", port=self.port, user="root").close()
                return
            except pymysql.err.OperationalError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mariadbd did not start: {self.error_log()}") from None
                time.sleep(0.1)

    def create_database(self) -> None:
        connection = pymysql.connect(host="127.0.0.1", port=self.port, user="root")
        with connection:
            connection.cursor().execute("CREATE DATABASE hazardwatch CHARACTER SET utf8mb4")

    def kill(self) -> None:
        """SIGKILL, like a crash or a pulled plug: no clean shutdown."""
        if self._process is not None:
            os.kill(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=30)
            self._process = None

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
            self._process = None

    def error_log(self) -> str:
        log = self.root / "error.log"
        return log.read_text()[-2000:] if log.exists() else "(no error log)"
