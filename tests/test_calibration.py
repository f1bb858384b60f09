"""Calibration from a camera's stored score history (`calibrate --from-history`, issue 28.5)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from hazardwatch.calibration import MIN_HISTORY_S, normal_history
from hazardwatch.cli import main
from hazardwatch.detect.normal import CameraNormal, ReferenceSet
from hazardwatch.records import EventRecord, ScoreSample
from hazardwatch.scoring.bank import DEFAULT_BANK, load_bank
from hazardwatch.storage import migrate
from hazardwatch.storage.engine import create_engine
from hazardwatch.storage.repository import Repository

NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - timedelta(seconds=1500)
LIFTED = "traffic_accident"


def history(seconds: int, rng: np.random.Generator) -> list[ScoreSample]:
    """One row a second per hazard class: a low level with noise; `LIFTED` at 0.9 from
    600 to 680 s (the span of a stored event and its margins)."""
    out = []
    for name in load_bank(DEFAULT_BANK).hazard_classes:
        values = np.clip(0.05 + 0.01 * rng.standard_normal(seconds), 0.001, 1.0)
        if name == LIFTED:
            values[600:680] = 0.9
        out += [
            ScoreSample("gate", START + timedelta(seconds=i), name, float(v))
            for i, v in enumerate(values)
        ]
    return out


def event(start_s: float, end_s: float) -> EventRecord:
    return EventRecord(
        uuid="e-1",
        camera="gate",
        class_name=LIFTED,
        severity="critical",
        status="closed",
        started_at=START + timedelta(seconds=start_s),
        ended_at=START + timedelta(seconds=end_s),
        peak_at=START + timedelta(seconds=start_s),
        peak_score=0.9,
        mean_score=0.9,
        verdict="false_alarm",
    )


def test_normal_history_leaves_out_event_spans_and_their_margins() -> None:
    samples = [ScoreSample("gate", START + timedelta(seconds=i), "fire", 0.1) for i in range(200)]
    spans = [(START + timedelta(seconds=100), START + timedelta(seconds=110))]
    values, times = normal_history(samples, spans, ["fire", "smoke"], margin_s=30.0)["fire"]
    kept = times - START.timestamp()
    assert kept.size == 200 - 71  # 70 s to 140 s inclusive are left out
    assert not ((kept >= 70) & (kept <= 140)).any()
    assert np.all(np.diff(times) > 0) and np.all(values == 0.1)


def test_calibrate_from_history_stores_a_calibration_without_the_events_and_keeps_references(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = create_engine(database_url)
    migrate.upgrade(engine)
    repository = Repository(engine)
    repository.add_scores(history(1500, np.random.default_rng(7)))
    repository.upsert_event(event(610, 650))
    references = ReferenceSet(4)
    references.extend(np.eye(8, dtype=np.float32)[:2])
    before = CameraNormal(references=references)
    repository.save_camera_state("gate", json.dumps(before.to_json()), "prior", 2)
    config = tmp_path / "hw.yaml"
    config.write_text(
        f"storage: {{database_url: '{database_url}', data_dir: '{tmp_path / 'data'}'}}\n"
        "cameras: [{name: gate, url: 'rtsp://cam.example/gate'}]\n"
    )

    code = main(["calibrate", "--camera", "gate", "--from-history", "1", "--config", str(config)])
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "calibrated from" in printed and "2 normal reference(s) kept" in printed
    state = CameraNormal.from_json(json.loads(repository.load_camera_states()["gate"]))
    assert state.calibrated and len(state.references) == 2
    assert set(state.classes) == set(load_bank(DEFAULT_BANK).hazard_classes)
    lifted = state.classes[LIFTED]
    # The hour holds 3600 s but 1500 s were stored; 580-680 s (the event and its 30-s
    # margins) are left out, and that gap counts 5 s (five sampling intervals).
    assert state.calibrated_s == pytest.approx(579 + 818 + 5)
    assert lifted.high < 0.1  # the event's 0.9 never reached the band
    assert lifted.threshold is not None and lifted.noise is not None

    # Too little normal history: a clear error that says what to do, nothing stored.
    code = main(["calibrate", "--camera", "gate", "--from-history", "0.1", "--config", str(config)])
    assert code == 2
    err = capsys.readouterr().err
    assert f"at least {MIN_HISTORY_S:.0f} s are needed" in err and "calibrate from a video" in err
    engine.dispose()


def test_from_history_reads_the_bank_the_api_edited_and_leaves_a_new_class_to_learn(
    tmp_path: Path, database_url: str
) -> None:
    """The live bank is the database's once an admin edited it: a class by example added
    lately, with a minute of score rows, is left out for the camera to learn online (the
    others are calibrated with their share of the budget, as if it were there); with an
    hour of rows it is calibrated too, and what defines it is recorded."""
    from hazardwatch.calibration import calibrate_camera_from_history
    from hazardwatch.scoring.bank import Example, PromptBank
    from hazardwatch.settings import load_settings

    engine = create_engine(database_url)
    migrate.upgrade(engine)
    repository = Repository(engine)
    rng = np.random.default_rng(3)
    repository.add_scores(history(1500, rng))
    base = load_bank(DEFAULT_BANK)
    sight = Example.of("upload:ab", np.eye(8)[0])
    edited = PromptBank.from_text(
        base.to_text() + f"  red_sight:\n    kind: hazard\n    model: m\n    examples:\n"
        f"      - {{source: {sight.source}, embedding: '{sight.embedding}'}}\n"
    )
    edited = PromptBank.from_text(edited.to_text())  # as the API stores it
    repository.banks.add(edited.version, edited.to_text(), "ada", "create", "red_sight", "")
    lately = np.clip(0.6 + 0.01 * rng.standard_normal(60), 0, 1)
    repository.add_scores([ScoreSample("gate", NOW - timedelta(seconds=70 - i), "red_sight",
                                       float(v)) for i, v in enumerate(lately)])  # fmt: skip
    settings = load_settings(
        None,
        storage={"database_url": database_url, "data_dir": str(tmp_path / "data")},
        cameras=[{"name": "gate", "url": "rtsp://cam.example/gate"}],
    )
    state = calibrate_camera_from_history(settings, "gate", 1.0)
    assert "red_sight" not in state.classes and state.definitions == {}
    assert set(state.classes) == set(base.hazard_classes)
    # The same budget share per class as with every class calibrated.
    more = np.clip(0.6 + 0.01 * rng.standard_normal(1400), 0, 1)
    repository.add_scores([ScoreSample("gate", START + timedelta(seconds=i), "red_sight",
                                       float(v)) for i, v in enumerate(more)])  # fmt: skip
    full = calibrate_camera_from_history(settings, "gate", 1.0)
    assert full.classes["red_sight"].threshold is not None
    assert full.definitions == {"red_sight": edited.get("red_sight").definition}
    assert full.classes[LIFTED].threshold == pytest.approx(state.classes[LIFTED].threshold)
    engine.dispose()
