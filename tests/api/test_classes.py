"""Hazard classes in words through the API: an admin adds, changes and removes classes;
every change is a version of the whole bank (who, when, a diff) that the scoring worker
takes without a restart; bad classes are refused with the reason; viewers and operators
only read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hazardwatch.api.app import ApiState, create_app
from hazardwatch.handoff.queue import LocalQueue
from hazardwatch.records import GatedFrame
from hazardwatch.scoring.bank import DEFAULT_BANK, PromptBank
from hazardwatch.scoring.bank_source import DatabaseBank, FileBank
from hazardwatch.scoring.worker import ScoringWorker
from hazardwatch.settings import ApiSettings
from tests.fakes import FakeEncoder
from tests.helpers import api_client

ADMIN, OPERATOR, VIEWER = "a" * 32, "o" * 32, "v" * 32
FORKLIFT: dict[str, Any] = {
    "name": "forklift_in_walkway",
    "severity": "critical",
    "prompts": ["a forklift in a pedestrian walkway", "a forklift driving among people"],
    "cameras": ["south"],
}


@pytest.fixture
def banks(state: ApiState, tmp_path: Path) -> DatabaseBank:
    bank_file = tmp_path / "bank.yaml"
    bank_file.write_text(DEFAULT_BANK.read_text())
    state.banks = DatabaseBank(state.repository.banks, FileBank(bank_file))
    state.repository.ensure_cameras([("south", "rtsp"), ("north", "rtsp")])
    return state.banks


@pytest.fixture
def client(state: ApiState, banks: DatabaseBank) -> TestClient:
    users = [
        {"name": "ada", "role": "admin", "token": ADMIN},
        {"name": "otto", "role": "operator", "token": OPERATOR},
        {"name": "vera", "role": "viewer", "token": VIEWER},
    ]
    return api_client(create_app(state, ApiSettings(users=users)))  # type: ignore[arg-type]


def as_(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_an_admin_adds_changes_and_removes_a_class_each_a_recorded_version(
    client: TestClient, state: ApiState, banks: DatabaseBank
) -> None:
    told: list[str] = []
    state.bank_changed = lambda: told.append("changed")
    before = client.get("/api/v1/classes", headers=as_(VIEWER)).json()
    assert before["source"] == "file" and "traffic_accident" in [
        c["name"] for c in before["classes"]
    ]

    added = client.post("/api/v1/classes", json=FORKLIFT, headers=as_(ADMIN))
    assert added.status_code == 201, added.text
    version = added.json()["version"]
    assert version != before["version"] and told == ["changed"]
    assert "+  forklift_in_walkway:" in added.json()["diff"]
    now = client.get("/api/v1/classes", headers=as_(VIEWER)).json()
    assert now["source"] == "database" and now["version"] == version
    forklift = next(c for c in now["classes"] if c["name"] == "forklift_in_walkway")
    assert forklift["kind"] == "hazard" and forklift["severity"] == "critical"
    assert forklift["cameras"] == ["south"] and len(forklift["prompts"]) == 2
    assert banks.current().version == version  # what the worker will take

    changed = client.put(
        "/api/v1/classes/forklift_in_walkway",
        json={**{k: v for k, v in FORKLIFT.items() if k != "name"}, "severity": "warning"},
        headers=as_(ADMIN),
    )
    assert changed.status_code == 200, changed.text
    assert "-    severity: critical" in changed.json()["diff"]
    assert "+    severity: warning" in changed.json()["diff"]
    gone = client.delete("/api/v1/classes/forklift_in_walkway", headers=as_(ADMIN))
    assert gone.status_code == 204
    # Back to the classes it started from (a version of the database's own text).
    after = client.get("/api/v1/classes", headers=as_(VIEWER)).json()
    assert after["classes"] == before["classes"] and after["source"] == "database"

    history = client.get("/api/v1/classes/history", headers=as_(VIEWER)).json()["items"]
    assert [(h["action"], h["class_name"], h["by"]) for h in history] == [
        ("delete", "forklift_in_walkway", "ada"),
        ("update", "forklift_in_walkway", "ada"),
        ("create", "forklift_in_walkway", "ada"),
    ]
    assert all(h["at"].endswith("Z") and h["diff"] for h in history)
    assert told == ["changed"] * 3


def test_the_worker_takes_a_new_version_without_a_restart(
    client: TestClient, banks: DatabaseBank
) -> None:
    queue: LocalQueue[GatedFrame] = LocalQueue(4)
    worker = ScoringWorker(FakeEncoder(), banks.current(), queue, lambda _: None, bank_source=banks)
    assert "forklift_in_walkway" not in worker.bank.class_names
    assert client.post("/api/v1/classes", json=FORKLIFT, headers=as_(ADMIN)).status_code == 201
    assert worker.maybe_reload_bank(force=True)
    assert "forklift_in_walkway" in worker.bank.class_names
    assert worker.index.class_embeddings.shape[0] == len(worker.bank.classes)
    assert not worker.maybe_reload_bank(force=True)  # nothing new


@pytest.mark.parametrize(
    ("change", "status", "reason"),
    [
        ({"prompts": []}, 422, "give prompts (words) or examples"),
        ({"prompts": ["  "]}, 422, "at least 1 character"),
        ({"prompts": ["p"] * 33}, 422, "at most 32 items"),
        ({"prompts": ["x" * 201]}, 422, "at most 200 characters"),
        ({"name": "Bad Name"}, 422, "pattern"),
        ({"name": "traffic_accident"}, 409, "exists"),
        ({"cameras": ["nowhere"]}, 422, "no camera 'nowhere' is known"),
        ({"severity": "apocalyptic"}, 422, "info"),
        ({"colour": "red"}, 422, "Extra inputs"),
        ({"prompts": ["a car crash on the road"]}, 422, "appears in"),
        ({"enter_threshold": 0.1, "exit_threshold": 0.2}, 422, "exit_threshold"),
    ],
)
def test_a_bad_class_is_refused_with_the_reason(
    client: TestClient, banks: DatabaseBank, change: dict[str, Any], status: int, reason: str
) -> None:
    taken = next(p for c in banks.current().classes for p in c.prompts if "crash" in p)
    if change.get("prompts") == ["a car crash on the road"]:
        change = {"prompts": [taken]}  # a prompt another class has
    got = client.post("/api/v1/classes", json={**FORKLIFT, **change}, headers=as_(ADMIN))
    assert got.status_code == status, got.text
    assert reason in got.text, got.text
    assert banks.table.latest() is None  # nothing stored


def test_only_an_admin_changes_classes_and_unknown_ones_are_404(client: TestClient) -> None:
    for token in (OPERATOR, VIEWER):
        assert client.post("/api/v1/classes", json=FORKLIFT, headers=as_(token)).status_code == 403
        assert client.delete("/api/v1/classes/fire_smoke", headers=as_(token)).status_code == 403
    assert client.get("/api/v1/classes").status_code == 401
    body = {k: v for k, v in FORKLIFT.items() if k != "name"}
    missing = client.put("/api/v1/classes/no_such_class", json=body, headers=as_(ADMIN))
    assert missing.status_code == 404 and "no class 'no_such_class'" in missing.text


def test_the_last_hazard_class_cannot_be_removed(
    client: TestClient, state: ApiState, tmp_path: Path
) -> None:
    bank_file = tmp_path / "one.yaml"
    bank_file.write_text(
        "classes:\n  fire: {kind: hazard, prompts: [a fire]}\n"
        "  road: {kind: normal, prompts: [a road]}\n"
    )
    state.banks = DatabaseBank(state.repository.banks, FileBank(bank_file))
    got = client.delete("/api/v1/classes/fire", headers=as_(ADMIN))
    assert got.status_code == 409 and "last hazard class" in got.text
    assert client.delete("/api/v1/classes/road", headers=as_(ADMIN)).status_code == 204
    assert PromptBank.from_text(state.banks.table.latest().text).class_names == ["fire"]  # type: ignore[union-attr]
