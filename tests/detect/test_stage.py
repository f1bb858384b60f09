"""The detector stage: camera states in and out, normal references, peak embeddings."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from hazardwatch.detect.detector import DetectorParams
from hazardwatch.detect.normal import CameraNormal, ReferenceSet, decode_embedding
from hazardwatch.detect.stage import DetectorStage
from hazardwatch.records import (
    ClassNormal,
    EventRecord,
    EventUpdate,
    Frame,
    GatedFrame,
    MotionResult,
    ScoredFrame,
    ScoreSample,
)
from hazardwatch.scoring.bank import PromptBank

BANK = PromptBank.from_text(
    """
classes:
  fire:
    kind: hazard
    prompts: [a fire]
    normal: {low: 0.0, level: 0.05, high: 0.1}
  street: {kind: normal, prompts: [a street]}
"""
)
PARAMS = DetectorParams(smoothing_s=0.0, min_duration_s=0.5, cooldown_s=1.0, normal_margin=0.1)
T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
SIGN = np.eye(8, dtype=np.float32)[0]  # the embedding of "the red sign"


def scored(
    camera: str,
    t: float,
    fire: float,
    embedding: np.ndarray | None = None,
    base: datetime = T0,
) -> ScoredFrame:
    frame = Frame(
        camera, int(t * 10), t, base + timedelta(seconds=t), np.zeros((4, 4, 3), np.uint8)
    )
    gated = GatedFrame(frame, MotionResult(True, 0.1, None), "motion", 1)
    probs = {"fire": fire, "street": 1 - fire}
    return ScoredFrame(gated, probs, np.zeros(2, np.float32), BANK, embedding)


class Saves:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, object]]] = []

    def __call__(self, camera: str, normal: CameraNormal) -> None:
        self.calls.append((camera, normal.to_json()))


def test_a_camera_without_state_starts_from_the_banks_prior() -> None:
    events: list[EventUpdate] = []
    stage = DetectorStage(PARAMS, events.append)
    # A fire in view from the first frame: 0.7 is far above the prior band (top 0.2).
    stage.on_scored([scored("gate", i / 10, 0.7) for i in range(20)])
    assert [e.kind for e in events] == ["started"]
    normal = stage.normal("gate")
    assert normal is not None and normal.source == "prior"
    assert normal.classes == {"fire": ClassNormal(0.0, 0.05, 0.1)}


def test_a_stored_state_is_used_and_saved_with_its_baselines() -> None:
    saves = Saves()
    stored = CameraNormal(
        classes={"fire": ClassNormal(0.3, 0.4, 0.5)}, baselines={"fire": 0.45}, source="calibrated"
    )
    stage = DetectorStage(
        PARAMS, lambda e: None, normals={"gate": stored}, save_state=saves, state_interval_s=5.0
    )
    stage.on_scored([scored("gate", i / 10, 0.45) for i in range(3)])
    assert len(saves.calls) == 1  # the first save is due at once, the next in 5 s
    camera, data = saves.calls[0]
    assert camera == "gate" and data["source"] == "calibrated"
    assert data["baselines"] == {"fire": pytest.approx(0.45)}
    stage.flush()
    assert len(saves.calls) == 2  # shutdown always saves


def test_a_camera_closed_by_a_reload_is_saved_with_the_baselines_it_ran_to() -> None:
    saves = Saves()
    stored = CameraNormal(
        classes={"fire": ClassNormal(0.3, 0.4, 0.5)}, baselines={"fire": 0.45}, source="calibrated"
    )
    stage = DetectorStage(
        PARAMS, lambda e: None, normals={"gate": stored}, save_state=saves, state_interval_s=3600
    )
    stage.on_scored([scored("gate", i / 10, 0.32) for i in range(600)])  # a minute lower
    stage.close_camera("gate")
    assert len(saves.calls) == 2  # the first frame's, and the close's
    first, closed = (data["baselines"]["fire"] for _, data in saves.calls)  # type: ignore[index]
    assert first == pytest.approx(0.45, abs=0.01)
    assert closed < first - 0.05  # what the minute taught, not the state it started from
    stage.on_scored([scored("gate", 60 + i / 10, 0.32) for i in range(10)])
    assert len(saves.calls) == 2  # closed: its queued frames are ignored
    stage.open_camera("gate")
    stage.on_scored([scored("gate", 61 + i / 10, 0.32) for i in range(10)])
    stage.flush()
    assert saves.calls[-1][1]["baselines"]["fire"] == pytest.approx(closed, abs=0.02)  # type: ignore[index]


def test_a_failing_save_never_stops_the_detector(caplog: pytest.LogCaptureFixture) -> None:
    events: list[EventUpdate] = []

    def broken(camera: str, normal: CameraNormal) -> None:
        raise RuntimeError("database gone")

    stage = DetectorStage(PARAMS, events.append, save_state=broken)
    stage.on_scored([scored("gate", i / 10, 0.9) for i in range(20)])
    assert [e.kind for e in events] == ["started"]
    assert "could not be handed over" in caplog.text


def test_events_carry_the_peak_frames_embedding() -> None:
    events: list[EventUpdate] = []
    stage = DetectorStage(PARAMS, events.append)
    stage.on_scored([scored("gate", i / 10, 0.9, SIGN) for i in range(20)])
    embedding = events[0].record.peak_embedding
    assert embedding is not None
    np.testing.assert_allclose(decode_embedding(embedding), SIGN)


def test_events_record_the_statistic_and_threshold_that_opened_them() -> None:
    calibrated = CameraNormal(
        classes={"fire": ClassNormal(0.01, 0.02, 0.05, noise=0.3, threshold=6.0)},
        source="calibrated",
    )
    events: list[EventUpdate] = []
    stage = DetectorStage(PARAMS, events.append, normals={"gate": calibrated})
    stage.on_scored([scored("gate", i / 10, 0.02) for i in range(10)])
    stage.on_scored([scored("gate", 1 + i / 10, 0.9) for i in range(20)])
    record = events[0].record
    assert events[0].kind == "started"
    assert record.opened_threshold == 6.0  # the calibrated threshold: the evidence rule
    assert record.opened_statistic is not None and record.opened_statistic >= 6.0
    # A camera on the bank's prior: the offset rule, its excess over enter_threshold.
    prior: list[EventUpdate] = []
    DetectorStage(PARAMS, prior.append).on_scored([scored("gate", i / 10, 0.9) for i in range(20)])
    assert prior[0].record.opened_threshold == PARAMS.enter_threshold
    assert (prior[0].record.opened_statistic or 0.0) > PARAMS.enter_threshold


def test_learning_a_false_alarm_silences_that_sight_on_that_camera_only() -> None:
    saves = Saves()
    events: list[EventUpdate] = []
    stage = DetectorStage(PARAMS, events.append, save_state=saves, max_references=3)
    assert stage.references("gate") is None
    assert stage.learn_normal("gate", SIGN) == 1  # no state yet: one is made
    assert saves.calls == []  # saved by the scoring thread, not the API's
    refs = stage.references("gate")
    assert isinstance(refs, ReferenceSet) and refs.capacity == 3
    # The stage itself compares each frame's embedding with the camera's references.
    stage.on_scored([scored("gate", i / 10, 0.9, SIGN) for i in range(20)])
    assert events == []  # the known sight gives no evidence
    assert [c for c, _ in saves.calls] == ["gate"]  # saved with the first frame after
    assert saves.calls[0][1]["references"]["dim"] == 8
    stage.on_scored([scored("yard", i / 10, 0.9, SIGN) for i in range(20)])
    assert [e.record.camera for e in events] == ["yard"]


def test_learning_after_the_bank_is_known_keeps_its_prior() -> None:
    stage = DetectorStage(PARAMS, lambda e: None)
    stage.on_scored([scored("gate", 0.0, 0.05)])
    stage.learn_normal("gate", SIGN)
    stage.learn_normal("new", SIGN)
    gate, new = stage.normal("gate"), stage.normal("new")
    assert gate is not None and "fire" in gate.classes and len(gate.references) == 1
    assert new is not None and "fire" in new.classes  # the last bank's prior


def test_a_bank_reload_keeps_open_events_unless_its_classes_change() -> None:
    events: list[EventUpdate] = []
    stage = DetectorStage(PARAMS, events.append)
    stage.on_scored([scored("gate", i / 10, 0.9) for i in range(10)])
    assert [e.kind for e in events] == ["started"]
    reworded = PromptBank.from_text(
        "classes:\n  fire: {kind: hazard, prompts: [flames], enter_threshold: 0.5}\n"
        "  street: {kind: normal, prompts: [a street]}\n"
    )
    frame = scored("gate", 1.0, 0.9)
    stage.on_scored([ScoredFrame(frame.gated, frame.probabilities, frame.prompt_similarities,
                                 reworded)])  # fmt: skip
    assert [e.kind for e in events] == ["started"]  # same classes: the event carries on
    more = PromptBank.from_text(
        "classes:\n  fire: {kind: hazard, prompts: [flames]}\n"
        "  flood: {kind: hazard, prompts: [water]}\n"
    )
    frame = scored("gate", 1.1, 0.9)
    stage.on_scored([ScoredFrame(frame.gated, {"fire": 0.9, "flood": 0.1},
                                 frame.prompt_similarities, more)])  # fmt: skip
    assert [e.kind for e in events] == ["started", "ended"]  # new classes: closed, restarted
    assert events[1].record.ended_at is not None


def with_bank(frame: ScoredFrame, bank: PromptBank, probs: dict[str, float]) -> ScoredFrame:
    return ScoredFrame(frame.gated, probs, frame.prompt_similarities, bank)


def test_mixed_bank_versions_during_a_rollout_never_restart_the_detector() -> None:
    """Workers mid-rollout send old and new bank versions interleaved. Same classes: every
    frame counts. Other classes: the newest version wins and the old one's frames are
    dropped and counted, instead of closing and reopening the event each frame."""
    events: list[EventUpdate] = []
    stage = DetectorStage(PARAMS, events.append)
    band = "normal: {low: 0.0, level: 0.05, high: 0.1}"
    reworded = PromptBank.from_text(
        f"classes:\n  fire: {{kind: hazard, prompts: [flames], {band}}}\n"
        "  street: {kind: normal, prompts: [a road]}\n"
    )
    more = PromptBank.from_text(
        f"classes:\n  fire: {{kind: hazard, prompts: [flames], {band}}}\n"
        "  flood: {kind: hazard, prompts: [water]}\n"
        "  street: {kind: normal, prompts: [a street]}\n"
    )
    for i in range(30):  # 3 s: BANK and its rewording alternate
        frame = scored("gate", i / 10, 0.9)
        bank = BANK if i % 2 else reworded
        stage.on_scored([with_bank(frame, bank, frame.probabilities)])
    assert [e.kind for e in events] == ["started"] and stage.frames_old_bank == 0
    for i in range(30, 60):  # then the new classes roll out, the old bank still in flight
        frame = scored("gate", i / 10, 0.9)
        if i % 2:
            stage.on_scored([with_bank(frame, more, {"fire": 0.9, "flood": 0.05, "street": 0.05})])
        else:
            stage.on_scored([with_bank(frame, BANK, frame.probabilities)])
    kinds = [e.kind for e in events]
    assert kinds.count("started") == 2 and kinds.count("ended") == 1  # one switch, once
    assert stage.frames_old_bank == 14  # BANK's frames after `more` first came
    # A rollback: the new bank is not seen for the rollout window, the old one takes over.
    for i in range(60, 60 + 10 * 35):
        frame = scored("gate", i / 10, 0.9)
        stage.on_scored([with_bank(frame, BANK, frame.probabilities)])
    # Dropped for the 30 s window after `more` was last seen (t 5.9), counted after that.
    assert 14 + 299 <= stage.frames_old_bank <= 14 + 301
    assert [e.kind for e in events].count("started") == 3


def test_feedback_for_a_camera_not_seen_this_run_is_saved_at_flush() -> None:
    saves = Saves()
    stage = DetectorStage(PARAMS, lambda e: None, save_state=saves)
    stage.learn_normal("yard", SIGN)
    stage.flush()
    assert [c for c, _ in saves.calls] == ["yard"]


def test_a_prior_follows_the_bank_but_a_calibration_stays() -> None:
    calibrated = CameraNormal(classes={"fire": ClassNormal(0.2, 0.3, 0.4)}, source="calibrated")
    stage = DetectorStage(PARAMS, lambda e: None, normals={"gate": calibrated})
    stage.on_scored([scored("gate", 0.0, 0.1), scored("yard", 0.0, 0.1)])
    wider = PromptBank.from_text(
        "classes:\n  fire: {kind: hazard, prompts: [flames],\n"
        "         normal: {low: 0, level: 0.1, high: 0.5}}\n"
        "  flood: {kind: hazard, prompts: [water]}\n"
    )
    frame = scored("gate", 1.0, 0.1)
    for camera in ("gate", "yard"):
        f = scored(camera, 1.0, 0.1)
        stage.on_scored(
            [ScoredFrame(f.gated, {"fire": 0.1, "flood": 0.1}, f.prompt_similarities, wider)]
        )
    del frame
    gate, yard = stage.normal("gate"), stage.normal("yard")
    assert gate is not None and gate.classes == {"fire": ClassNormal(0.2, 0.3, 0.4)}
    assert yard is not None and yard.classes == {"fire": ClassNormal(0.0, 0.1, 0.5)}


def test_a_resumed_series_samples_where_the_first_run_would_have() -> None:
    """After a crash the broker delivers frames again whose rows are stored: no row until an
    interval after the newest stored one, then the same spacing as an uninterrupted run."""
    frames = [scored("gate", i / 10, 0.01) for i in range(40)]  # 10 fps for 4 s
    whole: list[ScoreSample] = []
    DetectorStage(PARAMS, lambda u: None, whole.extend).on_scored(frames)
    assert [s.ts for s in whole if s.class_name == "fire"] == [T0 + timedelta(seconds=s)
                                                              for s in (0, 1, 2, 3)]  # fmt: skip
    stored = [s for s in whole if s.ts <= T0 + timedelta(seconds=1)]
    resumed: list[ScoreSample] = []
    stage = DetectorStage(
        PARAMS, lambda u: None, resumed.extend,
        scores_stored_until={"gate": T0 + timedelta(seconds=1)},
    )  # fmt: skip
    stage.on_scored(frames[5:])  # redelivered from 0.5 s on
    assert stored + resumed == whole


def test_each_frames_latency_from_its_reader_is_observed() -> None:
    seen: list[float] = []
    stage = DetectorStage(PARAMS, lambda u: None, observe_latency=seen.append)
    frame = scored("gate", 0.0, 0.01)
    late = dataclasses.replace(
        frame,
        gated=dataclasses.replace(
            frame.gated, frame=dataclasses.replace(frame.gated.frame, received_at=time.time() - 0.5)
        ),
    )
    stage.on_scored([late])
    assert len(seen) == 1 and 0.5 <= seen[0] < 1.0


def test_an_event_left_open_by_a_killed_run_goes_on_under_its_uuid() -> None:
    """Issue 29.8: an events service killed mid-incident and restarted stored the incident
    twice (one row "interrupted", one detected again from the redelivered frames)."""
    from hazardwatch.records import EventRecord

    def left_open(uuid: str, camera: str) -> EventRecord:
        return EventRecord(uuid, camera, "fire", "warning", "open", T0, T0 + timedelta(seconds=1),
                           0.9, 0.8, revision=3, snapshot_path=f"{camera}/{uuid}.jpg")  # fmt: skip

    events: list[EventUpdate] = []
    stage = DetectorStage(
        PARAMS, events.append, resumable=[left_open("fire-1", "gate"), left_open("fire-2", "yard")]
    )
    stage.on_scored([scored("gate", 2 + i / 10, 0.7) for i in range(20)])  # the fire goes on
    first = events[0]
    assert (first.kind, first.resumed, first.record.uuid) == ("updated", True, "fire-1")
    assert first.record.started_at == T0 and first.record.revision == 4
    # The stored peak (0.9) is higher: it and its snapshot stay.
    assert first.record.peak_score == 0.9 and first.snapshot is None
    assert first.record.snapshot_path == "gate/fire-1.jpg"
    stage.on_scored([scored("gate", 4 + i / 10, 0.0) for i in range(40)])  # and goes out
    ended = [e for e in events if e.kind == "ended"]
    assert [(e.record.uuid, e.record.status) for e in ended] == [("fire-1", "closed")]
    assert stage.events_started == 0 and stage.events_resumed == 1
    assert len({e.record.uuid for e in events}) == 1  # one row, never two
    stage.flush()  # yard's never came back: closed as interrupted, not left open
    assert (events[-1].kind, events[-1].record.uuid, events[-1].record.status) == (
        "ended", "fire-2", "interrupted",
    )  # fmt: skip
    assert events[-1].record.revision == 4 and stage.events_interrupted == 1


def test_an_event_left_open_long_before_is_not_continued() -> None:
    """A live camera's fire more than the resume window after the restart (and after what
    was stored of the old event) is a new incident; the old one is closed."""
    from hazardwatch.records import EventRecord

    now = datetime.now(UTC)
    old = now - timedelta(hours=1)
    stored = EventRecord("old", "gate", "fire", "warning", "open", old, old, 0.9, 0.8)
    events: list[EventUpdate] = []
    stage = DetectorStage(PARAMS, events.append, resumable=[stored])
    later = now + timedelta(seconds=90)
    stage.on_scored([scored("gate", 2 + i / 10, 0.7, base=later) for i in range(20)])
    kinds = [(e.kind, e.record.uuid, e.record.status) for e in events]
    assert kinds[0] == ("ended", "old", "interrupted")  # nothing continued it in time
    assert kinds[1][0] == "started" and kinds[1][1] != "old"


def test_of_two_events_left_open_for_one_camera_and_class_the_older_is_closed() -> None:
    from hazardwatch.records import EventRecord

    older = EventRecord("older", "gate", "fire", "warning", "open", T0, T0, 0.9, 0.8)
    newer = dataclasses.replace(older, uuid="newer", started_at=T0 + timedelta(seconds=1))
    events: list[EventUpdate] = []
    stage = DetectorStage(PARAMS, events.append, resumable=[newer, older])
    stage.expire_resumable()  # the window is still open: only the superseded one goes
    assert [(e.record.uuid, e.record.status) for e in events] == [("older", "interrupted")]
    stage.on_scored([scored("gate", 2 + i / 10, 0.7) for i in range(20)])
    assert events[-1].record.uuid == "newer" and events[-1].resumed


def test_cameras_that_start_together_save_their_states_spread_over_the_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """200 cameras starting in the same second, a frame each a second for three minutes:
    each saves at its first frame, then once a minute, at its own phase of the minute —
    not all 200 in one second (a thousand such saves at once held the writer for
    seconds, and every frame's acknowledgement behind them)."""
    clock = [1000.0]
    monkeypatch.setattr("hazardwatch.detect.stage.time.monotonic", lambda: clock[0])
    saved_at: list[float] = []
    stage = DetectorStage(
        PARAMS, lambda e: None, save_state=lambda c, n: saved_at.append(clock[0]),
        state_interval_s=60.0,
    )  # fmt: skip
    cameras = [f"cam{i}" for i in range(200)]
    for second in range(180):
        clock[0] = 1000.0 + second
        stage.on_scored([scored(camera, second, 0.05) for camera in cameras])
    per_second = Counter(int(t - 1000.0) for t in saved_at)
    assert per_second[0] == 200  # the first frame's
    later = [n for second, n in per_second.items() if second > 0]
    assert sum(later) >= 2 * 200 - 10  # about one a minute each after that
    assert max(later) <= 20, f"{max(later)} cameras saved in the same second"


def test_cameras_handed_over_keep_their_open_events_open_for_the_next_owner() -> None:
    """Issue 27: a partition given to another events instance. Its cameras' states are
    saved with the baselines they ran to and their slots dropped; their open events are
    neither closed nor interrupted (the next owner continues them); other cameras, and
    what the stage was told to continue of them, are untouched."""
    from hazardwatch.records import EventRecord

    saves, events = Saves(), []
    stored = EventRecord("fire-9", "yard", "fire", "warning", "open", T0,
                         T0 + timedelta(seconds=1), 0.9, 0.8, revision=3)  # fmt: skip
    stage = DetectorStage(PARAMS, events.append, save_state=saves, resumable=[stored])
    stage.on_scored([scored(c, i / 10, 0.7) for i in range(20) for c in ("gate", "dock")])
    assert sorted(e.record.camera for e in events if e.kind == "started") == ["dock", "gate"]
    events.clear()
    saves.calls.clear()
    handed = stage.hand_over(lambda camera: camera in {"gate", "yard"})
    assert handed == ["gate"]  # yard has no slot: it was never seen this run
    assert events == []  # gate's event stays open, yard's is not interrupted
    assert [camera for camera, _ in saves.calls] == ["gate"]  # saved now, forced
    assert saves.calls[0][1]["baselines"]
    assert stage.normal("gate") is None and stage.normal("dock") is not None
    stage.expire_resumable()
    stage.flush()  # dock's event ends; nothing of gate or yard
    assert {(e.record.camera, e.kind) for e in events} == {("dock", "ended")}


def test_cameras_taken_over_continue_the_open_events_they_come_with() -> None:
    """The other side of a hand-over: the cameras' states and open events, read from the
    database, go into a running stage; the fire still in view goes on under its uuid."""
    from hazardwatch.records import EventRecord

    events: list[EventUpdate] = []
    stage = DetectorStage(PARAMS, events.append)
    stage.on_scored([scored("dock", i / 10, 0.01) for i in range(5)])
    normal = CameraNormal(
        classes={"fire": ClassNormal(0.0, 0.05, 0.1)}, baselines={"fire": 0.05},
        source="calibrated",
    )  # fmt: skip
    stored = EventRecord("fire-7", "gate", "fire", "warning", "open", T0,
                         T0 + timedelta(seconds=1), 0.9, 0.8, revision=5)  # fmt: skip
    stage.take_cameras({"gate": normal}, {"gate": T0}, [stored])
    stage.take_cameras({}, {}, [stored])  # taken again (a start that failed): not twice
    stage.expire_resumable()
    gate = stage.normal("gate")
    assert gate is not None and gate.source == "calibrated"
    stage.on_scored([scored("gate", 2 + i / 10, 0.7) for i in range(20)])
    assert [(e.kind, e.record.uuid, e.resumed) for e in events] == [("updated", "fire-7", True)]


def test_an_event_handed_over_open_that_nothing_continues_ends_where_it_was_left() -> None:
    """Handed over cleanly (a partition given back), everything of it stored: an event no
    frame continues is closed at its last stored frame, not called "interrupted" as one
    of an instance that died."""
    from hazardwatch.records import EventRecord

    def stored(uuid: str) -> EventRecord:
        peak = T0 + timedelta(seconds=3)
        return EventRecord(uuid, "gate", "fire", "warning", "open", T0, peak, 0.9, 0.8,
                           revision=2)  # fmt: skip

    events: list[EventUpdate] = []
    stage = DetectorStage(PARAMS, events.append)
    stage.take_cameras({}, {}, [stored("fire-3")], handed_over=True)
    stage.flush()  # the camera sent nothing more before the stop
    (ended,) = events
    assert (ended.kind, ended.record.uuid, ended.record.status) == ("ended", "fire-3", "closed")
    assert ended.record.ended_at == T0 + timedelta(seconds=3)
    assert stage.events_interrupted == 0
    died = DetectorStage(PARAMS, events.append, resumable=[stored("fire-4")])
    died.flush()  # the same, from an instance that died: interrupted
    assert events[-1].record.status == "interrupted" and died.events_interrupted == 1


def _moderate_fire() -> tuple[CameraNormal, list[tuple[float, float]]]:
    """A calibrated camera and 40 s of its fire channel: a moderate fire from 10 s to 20 s
    (z about 4.8: it takes the CUSUM two seconds to reach the threshold of 6)."""
    normal = CameraNormal(
        classes={"fire": ClassNormal(0.01, 0.02, 0.05, noise=0.3, threshold=6.0)},
        source="calibrated",
    )
    return normal, [(i / 10, 0.08 if 100 <= i < 200 else 0.02) for i in range(400)]


def _run_stage(stage: DetectorStage, series: list[tuple[float, float]]) -> None:
    stage.on_scored([scored("gate", t, p) for t, p in series])


def _uninterrupted(normal: CameraNormal, series: list[tuple[float, float]]) -> EventRecord:
    """The one event one stage that never stopped decides on `series`, as it ended."""
    alone: list[EventUpdate] = []
    stage = DetectorStage(PARAMS, alone.append, normals={"gate": normal})
    _run_stage(stage, series)
    stage.flush()
    (expected,) = [e.record for e in alone if e.kind == "ended"]
    return expected


def test_a_camera_handed_over_mid_event_goes_on_as_if_it_never_moved() -> None:
    """Issue 27 item 2: a partition handed over two seconds before a moderate fire goes
    out. The next owner takes the camera's checkpoint with its state: the event goes on
    under its uuid and ends when it would have on one instance. Before, the next owner's
    statistic started from zero, never reached the threshold in the fire's last two
    seconds, and the event ended where the first owner left it."""
    normal, series = _moderate_fire()
    expected = _uninterrupted(normal, series)

    saves, first = Saves(), []
    owner = DetectorStage(
        PARAMS, first.append, normals={"gate": CameraNormal.from_json(normal.to_json())},
        save_state=saves,
    )  # fmt: skip
    _run_stage(owner, series[:180])
    assert owner.hand_over(lambda camera: True) == ["gate"]
    stored = first[-1].record  # what the database holds of the event: open
    assert stored.status == "open"
    second: list[EventUpdate] = []
    taker = DetectorStage(PARAMS, second.append)
    state = CameraNormal.from_json(saves.calls[-1][1])
    taker.take_cameras({"gate": state}, {}, [stored], handed_over=True)
    _run_stage(taker, series[180:])
    taker.flush()
    assert [(e.kind, e.record.uuid, e.resumed) for e in second] == [
        ("updated", stored.uuid, True),
        ("ended", stored.uuid, False),
    ]
    ended = second[-1].record
    assert ended.status == "closed" and ended.ended_at == expected.ended_at
    assert ended.started_at == expected.started_at and ended.revision > stored.revision + 1
    assert taker.events_started == 0 and taker.events_interrupted == 0


def test_a_camera_whose_owner_died_mid_event_goes_on_from_the_state_saved_at_its_start() -> None:
    """The owner is killed: its last state is the one saved when the event opened (an
    event's start or end saves the camera's state at once), and the broker delivers again
    the frames it had not acknowledged. The event goes on under its uuid, is not closed
    as interrupted, and ends within two seconds of the uninterrupted run's end."""
    normal, series = _moderate_fire()
    expected = _uninterrupted(normal, series)

    saves, first = Saves(), []
    owner = DetectorStage(
        PARAMS, first.append, normals={"gate": CameraNormal.from_json(normal.to_json())},
        save_state=saves, state_interval_s=3600.0,
    )  # fmt: skip
    _run_stage(owner, series[:180])  # killed here: nothing more of it
    assert len(saves.calls) == 2  # the first frame's save and the event's start
    assert saves.calls[-1][1]["checkpoint"]["fire"]["state"] == "active"
    second: list[EventUpdate] = []
    taker = DetectorStage(
        PARAMS, second.append, normals={"gate": CameraNormal.from_json(saves.calls[-1][1])},
        resumable=[first[-1].record],
    )  # fmt: skip
    _run_stage(taker, series[170:])  # the last second again: it was not acknowledged
    taker.flush()
    assert [(e.kind, e.record.uuid) for e in second] == [
        ("updated", first[0].record.uuid),
        ("ended", first[0].record.uuid),
    ]
    ended = second[-1].record
    assert ended.status == "closed" and ended.ended_at is not None
    assert expected.ended_at is not None
    assert abs((ended.ended_at - expected.ended_at).total_seconds()) <= 2.0
    assert taker.events_interrupted == 0 and taker.events_started == 0


def test_an_event_handed_over_open_ends_at_its_cameras_last_frame_there() -> None:
    """Handed over open and never continued (the camera sent nothing more): it ends at the
    last frame its owner saw, from the saved checkpoint, as one instance would have
    ended it at shutdown; not at its peak, the last time stored of it."""
    from hazardwatch.records import EventRecord

    peak, last = T0 + timedelta(seconds=3), T0 + timedelta(seconds=7.5)
    stored = EventRecord("fire-5", "gate", "fire", "warning", "open", T0, peak, 0.9, 0.8,
                         revision=2)  # fmt: skip
    normal = CameraNormal(checkpoint={"fire": {"t": last.timestamp(), "state": "active"}})
    events: list[EventUpdate] = []
    stage = DetectorStage(PARAMS, events.append)
    stage.take_cameras({"gate": normal}, {}, [stored], handed_over=True)
    stage.flush()
    (ended,) = events
    assert (ended.record.status, ended.record.ended_at) == ("closed", last)
