"""Examples of a class by example through the API (api/examples.py): named by event,
kept by source, refused with the reason (another model, both prompts and examples, an
example not held), and a confirmed verdict's add_example."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from hazardwatch.api.app import ApiState, create_app
from hazardwatch.detect.normal import encode_embedding
from hazardwatch.scoring.bank import DEFAULT_BANK
from hazardwatch.scoring.bank_source import DatabaseBank, FileBank
from hazardwatch.scoring.worker import TextIndex
from hazardwatch.search.embedder import WorkerEmbedder
from hazardwatch.settings import ApiSettings
from tests.api.conftest import UUIDS, event
from tests.fakes import CRASH, QUIET, FakeEncoder
from tests.helpers import api_client

ADMIN, OPERATOR = "a" * 32, "o" * 32
NEW = "00000000-0000-4000-8000-000000000099"  # an event of the class by example


@pytest.fixture
def client(state: ApiState, tmp_path: Path) -> TestClient:
    bank_file = tmp_path / "bank.yaml"
    bank_file.write_text(DEFAULT_BANK.read_text())
    state.banks = DatabaseBank(state.repository.banks, FileBank(bank_file))
    assert state.worker is not None
    state.embedder = WorkerEmbedder(state.worker)
    for i, (vector, model) in enumerate([(CRASH, FakeEncoder.name), (QUIET, FakeEncoder.name),
                                         (CRASH, "ViT-L/14")]):  # fmt: skip
        state.repository.upsert_event(event(i, peak_embedding=encode_embedding(vector),
                                            model_name=model, revision=5))  # fmt: skip
    users = [
        {"name": "ada", "role": "admin", "token": ADMIN},
        {"name": "otto", "role": "operator", "token": OPERATOR},
    ]
    return api_client(create_app(state, ApiSettings(users=users)))  # type: ignore[arg-type]


def as_(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make(client: TestClient, **body: Any) -> Any:
    return client.post("/api/v1/classes", json={"name": "sight", **body}, headers=as_(ADMIN))


def test_a_class_is_made_from_events_and_keeps_its_examples_when_changed(
    client: TestClient, state: ApiState
) -> None:
    made = make(client, examples=[{"event": UUIDS[0]}, {"event": UUIDS[1]}, {"event": UUIDS[0]}])
    assert made.status_code == 201, made.text
    sight = made.json()["class"]
    assert [e["source"] for e in sight["examples"]] == [f"event:{UUIDS[0]}", f"event:{UUIDS[1]}"]
    assert sight["prompts"] == [] and sight["model"] == FakeEncoder.name
    assert "normal" not in sight  # search is off here: no keyframes, no prior
    # A change without examples keeps them; one naming a held source keeps only that.
    changed = client.put("/api/v1/classes/sight", json={"severity": "critical"},
                         headers=as_(ADMIN))  # fmt: skip
    assert changed.status_code == 200 and len(changed.json()["class"]["examples"]) == 2
    kept = client.put("/api/v1/classes/sight", json={"examples": [{"source": f"event:{UUIDS[1]}"}]},
                      headers=as_(ADMIN))  # fmt: skip
    assert [e["source"] for e in kept.json()["class"]["examples"]] == [f"event:{UUIDS[1]}"]
    assert state.banks is not None
    held = state.banks.current().get("sight")
    assert np.dot(held.examples[0].vector(), QUIET) == pytest.approx(1.0, abs=1e-3)
    # Scored with the bank it is in.
    index = TextIndex.build(state.banks.current(), FakeEncoder())
    probs = index.probabilities(index.score(QUIET[None, :], 100.0)[0][0])
    assert probs["sight"] == pytest.approx(1.0, abs=2e-3)


@pytest.mark.parametrize(
    ("body", "status", "why"),
    [
        ({"examples": [{"event": UUIDS[2]}]}, 409, "ViT-L/14"),
        ({"examples": [{"event": UUIDS[3]}]}, 404, "no stored embedding"),
        ({"examples": [{"event": "00000000-dead"}]}, 404, "no event"),
        ({"examples": [{"event": UUIDS[0]}], "prompts": ["a red thing"]}, 422, "not both"),
        ({"examples": [{"source": "upload:abc"}]}, 422, "holds no example"),
        ({"examples": [{"event": UUIDS[0], "keyframe": 3}]}, 422, "exactly one"),
        ({"examples": [{"keyframe": 3}]}, 503, "search is off"),
        ({"examples": [{"event": UUIDS[0]}] * 65}, 422, "at most 64"),
    ],
)
def test_a_bad_example_is_refused_with_the_reason(
    client: TestClient, state: ApiState, body: dict[str, Any], status: int, why: str
) -> None:
    got = make(client, **body)
    assert got.status_code == status, got.text
    assert why in got.text
    assert state.banks is not None and "sight" not in state.banks.current().class_names


def test_an_upload_makes_the_class_and_a_confirmed_verdict_adds_its_peak(
    client: TestClient, state: ApiState
) -> None:
    picture = np.full((120, 160, 3), 160, np.uint8)
    picture[20:100, 40:120] = (20, 20, 230)
    jpeg = cv2.imencode(".jpg", picture)[1].tobytes()
    files = {"file": ("red.jpg", jpeg, "image/jpeg")}
    made = client.post("/api/v1/classes/sight/examples", files=files, headers=as_(ADMIN))
    assert made.status_code == 200, made.text
    assert made.json()["class"]["examples"][0]["source"].startswith("upload:")
    again = client.post("/api/v1/classes/sight/examples", files=files, headers=as_(ADMIN))
    assert again.json()["diff"] == ""  # the same picture: held once
    # An operator confirms an event of the class and adds its peak.
    state.repository.upsert_event(event(4, uuid=NEW, class_name="sight",
                                        peak_embedding=encode_embedding(CRASH),
                                        model_name=FakeEncoder.name))  # fmt: skip
    wrong = client.post(f"/api/v1/events/{NEW}/feedback",
                        json={"verdict": "false_alarm", "add_example": True},
                        headers=as_(OPERATOR))  # fmt: skip
    assert wrong.status_code == 422 and state.repository.get_event(NEW).verdict is None  # type: ignore[union-attr]
    verdict = client.post(f"/api/v1/events/{NEW}/feedback",
                          json={"verdict": "confirmed", "add_example": True},
                          headers=as_(OPERATOR))  # fmt: skip
    assert verdict.status_code == 200, verdict.text
    assert verdict.json()["example"]["source"] == f"event:{NEW}"
    history = client.get("/api/v1/classes/history", headers=as_(ADMIN)).json()["items"]
    assert (history[0]["by"], history[0]["action"]) == ("otto", "example")
    # A class in words takes no examples, from a verdict or an admin.
    words = client.post(f"/api/v1/events/{UUIDS[0]}/feedback",
                        json={"verdict": "confirmed", "add_example": True},
                        headers=as_(OPERATOR))  # fmt: skip
    assert words.status_code == 409 and "described in words" in words.text
    no = client.post("/api/v1/classes/traffic_accident/examples", params={"event": UUIDS[1]},
                     headers=as_(ADMIN))  # fmt: skip
    assert no.status_code == 409
    assert client.post("/api/v1/classes/sight/examples", files=files,
                       headers=as_(OPERATOR)).status_code == 403  # fmt: skip
