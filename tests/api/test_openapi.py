"""The OpenAPI document is exact: schemathesis, every check, against the running API.

A fixed seed and a bounded number of examples keep it deterministic and quick. The two
exceptions the document cannot express are in schemathesis.toml (an upload that is not a
picture is 415; /readyz answers 503 by design) and the test checks they are still there.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from hazardwatch.api.app import ApiState, create_app
from hazardwatch.handoff.queue import LocalQueue
from hazardwatch.metrics import Metrics
from hazardwatch.records import KeyframeBatch, KeyframeRecord
from hazardwatch.scoring.bank import DEFAULT_BANK, load_bank
from hazardwatch.scoring.bank_source import DatabaseBank, FileBank
from hazardwatch.scoring.worker import ScoringWorker
from hazardwatch.search.embedder import WorkerEmbedder
from hazardwatch.search.service import KeyframeSearch
from hazardwatch.settings import ApiSettings
from tests.api.conftest import event
from tests.conftest import REPO_ROOT
from tests.fakes import FakeEncoder
from tests.helpers import serve_app

pytestmark = pytest.mark.slow


@pytest.fixture
def api_state(tmp_path: Path, sqlite_url: str) -> Iterator[ApiState]:
    from hazardwatch.storage import migrate
    from hazardwatch.storage.engine import create_engine
    from hazardwatch.storage.repository import Repository

    engine = create_engine(sqlite_url)
    migrate.upgrade(engine)
    repository = Repository(engine)
    for i in range(5):
        repository.upsert_event(event(i))
    worker = ScoringWorker(FakeEncoder(), load_bank(DEFAULT_BANK), LocalQueue(4), lambda _: None)
    worker.start()
    state = ApiState(repository, tmp_path / "media", Metrics(), worker=worker)
    # Search answers over a few stored keyframes, so the fuzzing reaches it.
    state.search = KeyframeSearch(repository.keyframes, FakeEncoder.name)
    state.embedder = WorkerEmbedder(worker)
    records = tuple(
        KeyframeRecord("south", event(i).started_at, worker.embed_text([f"sight {i}"])[0]
                       .astype(np.float16).tobytes(), f"south/k{i}.jpg", 10, FakeEncoder.name)
        for i in range(3)
    )  # fmt: skip
    state.search.stored(repository.keyframes.add(records), KeyframeBatch(records))
    # And the classes, edited in the database over a copy of the shipped bank.
    bank_file = tmp_path / "bank.yaml"
    bank_file.write_text(DEFAULT_BANK.read_text())
    state.banks = DatabaseBank(repository.banks, FileBank(bank_file))
    yield state
    engine.dispose()


def schemathesis(base: str, *extra: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert binary, "schemathesis is a dev dependency (pip install -e '.[dev]')"
    with tempfile.TemporaryDirectory() as cwd:  # its crash cache stays out of the checkout
        return _schemathesis(binary, base, cwd, *extra)


def _schemathesis(
    binary: str, base: str, cwd: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, "--config-file", str(REPO_ROOT / "schemathesis.toml"), "run",
         f"{base}/openapi.json", "--checks", "all", "--max-examples", "25", "--seed", "1",
         "--no-color", *extra],
        capture_output=True, text=True, timeout=600, check=False, cwd=cwd,
    )  # fmt: skip


@pytest.mark.parametrize("token", [None, "t0ken"])
def test_schemathesis_finds_no_failure(api_state: ApiState, token: str | None) -> None:
    settings = ApiSettings(token=token)  # type: ignore[arg-type]
    extra = ("--header", f"Authorization: Bearer {token}") if token else ()
    with serve_app(create_app(api_state, settings)) as base:
        result = schemathesis(base, *extra)
        summary = result.stdout[-3000:]
        if result.returncode:  # the whole report, for the failures cut from the summary
            print(result.stdout)
        assert result.returncode == 0, summary
        assert " passed" in summary and "failure" not in summary.split("Test cases:")[-1]


def test_the_documented_exceptions_are_the_only_ones() -> None:
    text = (REPO_ROOT / "schemathesis.toml").read_text()
    paths = [line.split("=", 1)[1].strip() for line in text.splitlines()
             if line.startswith("include-path")]  # fmt: skip
    assert paths == [
        '"/api/v1/score"',
        '"/api/v1/search/similar"',
        '"/api/v1/classes"',
        '"/api/v1/classes/{name}"',
        '"/api/v1/classes/{name}/examples"',
        '"/api/v1/events/{uuid}/feedback"',
        '"/readyz"',
    ]
