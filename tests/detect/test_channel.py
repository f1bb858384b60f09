"""A channel's checkpoint: a detector resumed from it goes on exactly as one never stopped.

Issue 27 item 2: a camera taken over by another events instance (or a restarted one) goes
on from its last checkpoint — the statistic and the event it was in — instead of starting
its statistic from zero and having to decide an open event again.
"""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hazardwatch.detect.channel import ChannelState, OpenEvent
from hazardwatch.detect.detector import (
    PEAK_REPORT_STEP,
    REDELIVERED_S,
    DetectionEvent,
    DetectorParams,
    TemporalDetector,
)
from hazardwatch.detect.normal import CameraNormal
from hazardwatch.records import ClassNormal
from tests.detect.test_false_alarm_budget import CLASSES, POOL, PROPERTY, calibrated, lifted

PARAMS = DetectorParams()
SECONDS = 100


def restart(detector: TemporalDetector, opened: dict[str, OpenEvent]) -> TemporalDetector:
    """What another instance builds: the state saved as the database holds it (JSON), the
    events stored open."""
    state = CameraNormal.from_json(detector.normal.to_json())
    state.checkpoint = json.loads(json.dumps(detector.checkpoint(), allow_nan=False))
    stored = CameraNormal.from_json(json.loads(json.dumps(state.to_json())))
    resumed = TemporalDetector(detector.camera, detector.params, normal=stored)
    resumed.resume(stored.checkpoint, opened)
    return resumed


def stored_open(events: list[DetectionEvent]) -> dict[str, OpenEvent]:
    """The events a database holds open after `events` (their last stored revision)."""
    last: dict[str, DetectionEvent] = {}
    for event in events:
        last[event.event_id] = event
    return {
        e.channel: OpenEvent(
            e.event_id,
            e.started_at,
            e.peak_score,
            e.peak_at,
            e.mean_score,
            (e.statistic or 0.0, e.threshold or 0.0),
        )
        for e in last.values()
        if e.kind != "ended"
    }


@pytest.fixture(scope="module")
def normals(scene_005: dict[str, np.ndarray]) -> dict[str, CameraNormal]:
    """Every class calibrated on the first 100 s of scene 005 (real normal noise)."""
    return {name: calibrated(scene_005[name][:POOL], 30.0, name) for name in CLASSES}


def same_decisions(
    again: list[DetectionEvent], after: list[DetectionEvent], carried: set[str]
) -> None:
    """Event by event: the same kind, times and reason; the ids of events open at the stop
    (`carried`) the same, those of later ones one to one; the same mean, and the same peak
    but for an event carried over, which holds its last stored peak (reported in steps)."""
    assert [(e.kind, e.at, e.started_at, e.ended_at, e.end_reason) for e in again] == [
        (e.kind, e.at, e.started_at, e.ended_at, e.end_reason) for e in after
    ]
    ids: dict[str, str] = {}
    for ours, theirs in zip(again, after, strict=True):
        if theirs.event_id in carried:
            assert ours.event_id == theirs.event_id
            assert ours.peak_score == pytest.approx(theirs.peak_score, abs=PEAK_REPORT_STEP)
        else:
            assert ids.setdefault(ours.event_id, theirs.event_id) == theirs.event_id
            assert ours.peak_score == theirs.peak_score
        assert ours.mean_score == theirs.mean_score
        assert (ours.statistic, ours.threshold) == (theirs.statistic, theirs.threshold)
    assert len(set(ids.values())) == len(ids)


@pytest.mark.shared
@settings(parent=PROPERTY, max_examples=40)
@given(
    name=st.sampled_from(CLASSES),
    fps=st.sampled_from([5.0, 10.0, 15.0, 30.0]),
    onset=st.floats(5.0, 50.0),
    duration=st.floats(0.5, 40.0),
    sigmas=st.floats(1.0, 15.0),
    split=st.floats(0.02, 0.98),
)
def test_a_detector_resumed_from_its_checkpoint_decides_as_one_never_stopped(
    scene_005, normals, name: str, fps: float, onset: float, duration: float, sigmas: float,
    split: float,
) -> None:  # fmt: skip
    """Real held-out noise of every class with a hazard lifted on it, at 5-30 fps, stopped
    anywhere (before, inside or after the event): the resumed detector's events, times and
    statistic equal the uninterrupted run's, and an open event goes on under its id."""
    normal = normals[name]
    noise = np.resize(scene_005[name][POOL:], int(SECONDS * fps))
    values = noise.copy()
    lift = slice(int(onset * fps), int((onset + duration) * fps))
    values[lift] = lifted(noise, normal, name, sigmas)[lift]
    whole = TemporalDetector("cam", PARAMS, normal=CameraNormal.from_json(normal.to_json()))
    stop = int(split * values.size)
    before: list[DetectionEvent] = []
    for i in range(stop):
        before += whole.update(i / fps, {name: float(values[i])}, ref=i)
    carried = stored_open(before)
    resumed = restart(whole, carried)
    after: list[DetectionEvent] = []
    again: list[DetectionEvent] = []
    for i in range(stop, values.size):
        after += whole.update(i / fps, {name: float(values[i])}, ref=i)
        again += resumed.update(i / fps, {name: float(values[i])}, ref=i)
    end = (values.size - 1) / fps
    after, again = after + whole.flush(end), again + resumed.flush(end)
    same_decisions(again, after, {o.event_id for o in carried.values()})
    ours, theirs = resumed.explain(name), whole.explain(name)
    assert ours is not None and theirs is not None
    assert ours["statistic"] == theirs["statistic"] and ours["state"] == theirs["state"]
    assert resumed.checkpoint_discarded == 0


def _calibrated(threshold: float = 4.0) -> CameraNormal:
    return CameraNormal(
        classes={"x": ClassNormal(0.01, 0.02, 0.05, noise=0.5, threshold=threshold)},
        source="calibrated",
    )


def _feed(detector: TemporalDetector, start: float, stop: float, p: float) -> list:
    events: list[DetectionEvent] = []
    for i in range(int(start * 10), int(stop * 10)):
        events += detector.update(i / 10, {"x": p}, ref=i)
    return events


def test_an_event_ended_after_the_checkpoint_is_not_taken_up_again() -> None:
    """The checkpoint was saved inside an event that then ended (nothing of it is stored
    open): the resumed channel is in cooldown from the checkpoint, emits nothing of that
    event, and a later hazard opens a new one."""
    detector = TemporalDetector("cam", PARAMS, normal=_calibrated())
    opened = _feed(detector, 0, 5, 0.02) + _feed(detector, 5, 8, 0.5)
    assert [e.kind for e in opened][:1] == ["started"]
    resumed = restart(detector, {})
    assert _feed(resumed, 8, 8.1, 0.02) == []  # the next frame after the checkpoint's
    # From zero again, not from the cap (4) the event held it at: one 0.1-s step up.
    assert resumed.explain("x")["statistic"] < 1.0  # type: ignore[index]
    assert _feed(resumed, 8.1, 30, 0.02) == []  # no end of an event it no longer has
    assert resumed.state("x") == ChannelState.IDLE
    (new, *_) = _feed(resumed, 30, 35, 0.5)
    assert new.kind == "started" and new.event_id != opened[0].event_id


def test_an_event_opened_after_the_checkpoint_goes_on_from_what_was_stored() -> None:
    """A killed owner saved its checkpoint before the event and stored the event's start:
    the next owner goes on with that event, its statistic at the threshold as an open
    event's is. A hazard still in view ends within 2 s of when the uninterrupted detector
    ends it (the baseline it learned in the seconds before the event opened is not in the
    older checkpoint); one gone before the takeover ends within threshold / reference_z
    seconds (plus the gap's one second) of the first frame."""
    whole = TemporalDetector("cam", PARAMS, normal=_calibrated())
    _feed(whole, 0, 5, 0.02)
    idle = json.loads(json.dumps(whole.checkpoint()))  # the last checkpoint saved
    during = _feed(whole, 5, 12, 0.5)
    carried = stored_open(during)
    for still_in_view, ends in ((8.0, 2.0), (0.0, 4.0 / PARAMS.reference_z + 1.0)):
        copy = TemporalDetector("cam", PARAMS, normal=_calibrated())
        copy.resume(json.loads(json.dumps(whole.checkpoint())), {})
        resumed = TemporalDetector("cam", PARAMS, normal=_calibrated())
        resumed.resume(idle, carried)
        hazard = 12.0 + still_in_view
        after = _feed(copy, 12, hazard, 0.5) + _feed(copy, hazard, 40, 0.02)
        again = _feed(resumed, 12, hazard, 0.5) + _feed(resumed, hazard, 40, 0.02)
        (ended,) = [e for e in again if e.kind == "ended"]
        assert ended.event_id == during[0].event_id and ended.started_at == during[0].started_at
        assert ended.threshold == during[0].threshold == 4.0
        assert not [e for e in again if e.kind == "started"]
        if still_in_view:
            assert ended.ended_at == pytest.approx(after[-1].ended_at, abs=ends)
        else:
            assert ended.ended_at is not None and 12.0 < ended.ended_at <= 12.0 + ends
            # Its stored part counts in its mean: more than the 0.02 seen since.
            assert ended.mean_score > 0.021


def test_a_bad_or_future_checkpoint_is_dropped_and_the_open_event_still_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    detector = TemporalDetector("cam", PARAMS, normal=_calibrated())
    carried = stored_open(_feed(detector, 0, 3, 0.02) + _feed(detector, 3, 6, 0.5))
    saved = detector.checkpoint()["x"]
    for bad in (
        {**saved, "state": "dozing"},
        {**saved, "evidence": {"smoothed": 2.0}},
        {**saved, "t": "soon"},
        {**saved, "count": "many"},  # read before anything changes: the channel stays as built
        {**saved, "peak": "high"},
        {**saved, "t": 6.0 + 3600.0},  # an hour ahead of the first frame
    ):
        resumed = TemporalDetector("cam", PARAMS, normal=_calibrated())
        resumed.resume({"x": bad}, carried)
        with caplog.at_level(logging.WARNING):
            events = _feed(resumed, 6, 20, 0.02)
        assert resumed.checkpoint_discarded == 1, bad
        assert [(e.kind, e.event_id) for e in events] == [("ended", carried["x"].event_id)]
    assert "saved detector state" in caplog.text
    edge = {**saved, "evidence": {**saved["evidence"], "smoothed": 0.0, "fast": 1.0}}
    resumed = TemporalDetector("cam", PARAMS, normal=_calibrated())
    resumed.resume({"x": edge}, carried)
    _feed(resumed, 6, 7, 0.02)
    assert resumed.checkpoint_discarded == 0  # probabilities of exactly 0 and 1 are fine


def test_frames_the_checkpoint_had_seen_are_skipped() -> None:
    """After a kill the broker delivers again the frames not yet acknowledged, some of
    which the saved checkpoint had seen: they are skipped, not counted twice, and the
    detector goes on exactly as one never stopped."""
    whole = TemporalDetector("cam", PARAMS, normal=_calibrated())
    carried = stored_open(_feed(whole, 0, 5, 0.02) + _feed(whole, 5, 8, 0.5))
    resumed = restart(whole, carried)
    resumed.resume(json.loads(json.dumps(whole.checkpoint())), carried, 8.0, REDELIVERED_S)
    assert _feed(resumed, 6, 8, 0.5) == []  # all seen: it stands where the checkpoint did
    assert resumed.explain("x") == whole.explain("x")
    again = _feed(resumed, 8, 9, 0.5) + _feed(resumed, 9, 20, 0.02)
    after = _feed(whole, 8, 9, 0.5) + _feed(whole, 9, 20, 0.02)
    assert resumed.skipped_out_of_order == 20  # 6.0-7.9: the checkpoint's last was 7.9
    same_decisions(again, after, {carried["x"].event_id})
    assert resumed.checkpoint_discarded == 0


@pytest.mark.parametrize("first, now", [(4.0, 8.0), (-30.0, 1e9)], ids=["future", "far"])
def test_a_checkpoint_from_a_clock_that_started_again_is_not_taken_up(
    first: float, now: float
) -> None:
    """A checkpoint later than the wall clock (a file replayed faster than real time), or
    more than 30 s later than the first frame, is from a clock that started again: going
    on from it would drop every frame until the clock passed it. The class starts afresh
    from the first frame instead, with the restored baseline; the open event goes on."""
    whole = TemporalDetector("cam", PARAMS, normal=_calibrated())
    carried = stored_open(_feed(whole, 0, 5, 0.02) + _feed(whole, 5, 8, 0.5))
    resumed = TemporalDetector("cam", PARAMS, normal=_calibrated())
    resumed.resume(json.loads(json.dumps(whole.checkpoint())), carried, now - 0.5, REDELIVERED_S)
    events = _feed(resumed, first, first + 4, 0.5) + _feed(resumed, first + 4, first + 20, 0.02)
    assert resumed.checkpoint_discarded == 1 and resumed.skipped_out_of_order == 0
    assert {e.event_id for e in events} == {carried["x"].event_id}
    assert [e.kind for e in events][-1:] == ["ended"] and "started" not in {e.kind for e in events}


def test_an_uncalibrated_channel_resumes_on_the_offset_rule() -> None:
    """A camera on the bank's prior (the offset rule): its smoothed score, baseline and
    open event carry over too."""
    prior = CameraNormal(classes={"x": ClassNormal(0.0, 0.05, 0.1)})
    whole = TemporalDetector("cam", PARAMS, normal=prior)
    before = _feed(whole, 0, 3, 0.05) + _feed(whole, 3, 6, 0.6)
    active = json.loads(json.dumps(whole.checkpoint()))
    resumed = restart(whole, stored_open(before))
    after = _feed(whole, 6, 9, 0.6) + _feed(whole, 9, 20, 0.05)
    again = _feed(resumed, 6, 9, 0.6) + _feed(resumed, 9, 20, 0.05)
    same_decisions(again, after, {before[0].event_id})
    assert resumed.checkpoint()["x"]["rule"] == "offset"
    ended = TemporalDetector("cam", PARAMS, normal=prior)
    ended.resume(active, {})  # its event no longer stored open: nothing more of it
    assert _feed(ended, 6, 7, 0.6) == [] and ended.state("x") == ChannelState.COOLDOWN


def test_a_checkpoint_survives_the_state_json_and_an_old_state_has_none() -> None:
    detector = TemporalDetector("cam", PARAMS, normal=_calibrated())
    _feed(detector, 0, 5, 0.5)
    state = _calibrated()
    state.checkpoint = detector.checkpoint()
    text = json.dumps(state.to_json(), allow_nan=False)  # -inf is stored as null
    assert CameraNormal.from_json(json.loads(text)).checkpoint == json.loads(text)["checkpoint"]
    old = json.loads(text)
    del old["checkpoint"]
    assert CameraNormal.from_json(old).checkpoint == {}
    assert CameraNormal.from_json({**old, "checkpoint": [1]}).checkpoint == {}
    assert math.isfinite(state.checkpoint["x"]["t"])


def test_a_pending_run_goes_on_across_a_hand_over() -> None:
    """The offset rule's pending run (above enter_threshold, not yet min_duration_s) is
    not an event yet: handed over in the middle of it, the event starts when it would
    have on one instance, not a pending run later."""
    prior = CameraNormal(classes={"x": ClassNormal(0.0, 0.05, 0.1)})
    whole = TemporalDetector("cam", PARAMS, normal=prior)
    _feed(whole, 0, 3, 0.05)
    _feed(whole, 3, 3.5, 0.6)
    assert whole.state("x") == ChannelState.PENDING
    resumed = restart(whole, {})
    after, again = _feed(whole, 3.5, 10, 0.6), _feed(resumed, 3.5, 10, 0.6)
    same_decisions(again, after, set())
    assert again and again[0].kind == "started"


def test_nothing_of_an_event_gone_since_the_checkpoint_leaks_into_the_next() -> None:
    """The checkpoint was inside a strong event that has since ended; the camera then
    shows a weaker hazard without a break. The event that opens once the cooldown is over
    takes its peak and mean from its own run, after the restart, not from the old one."""
    detector = TemporalDetector("cam", PARAMS, normal=_calibrated())
    old = _feed(detector, 0, 5, 0.02) + _feed(detector, 5, 8, 0.9)
    resumed = restart(detector, {})
    (new, *_) = _feed(resumed, 8, 30, 0.3)
    assert new.kind == "started" and new.event_id != old[0].event_id
    assert new.peak_at >= 8.0 and new.started_at >= 8.0


def test_an_event_whose_end_was_saved_but_not_stored_is_ended_again() -> None:
    """Killed between saving the checkpoint at an event's end and storing that end: the
    database still holds the event open. The next owner goes on with it and ends it (it
    cannot stay open), under its id."""
    detector = TemporalDetector("cam", PARAMS, normal=_calibrated())
    events = _feed(detector, 0, 5, 0.02) + _feed(detector, 5, 8, 0.5) + _feed(detector, 8, 20, 0.02)
    assert events[-1].kind == "ended"
    carried = stored_open(events[:-1])  # its end never reached the database
    resumed = restart(detector, carried)
    again = _feed(resumed, 20, 30, 0.02)
    assert [(e.kind, e.event_id) for e in again] == [("ended", events[0].event_id)]
