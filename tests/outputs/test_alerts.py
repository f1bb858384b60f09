from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hazardwatch.outputs.alerts import Alert, AlertDispatcher, AlertPolicy
from hazardwatch.records import EventRecord, EventUpdate, Severity


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Collect:
    name = "collect"

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.alerts.append(alert)


def update(
    kind: str, uuid: str = "e1", *, camera: str = "cam", cls: str = "traffic_accident",
    severity: Severity = "critical", revision: int = 0, snapshot: str | None = "cam/e1.jpg",
) -> EventUpdate:  # fmt: skip
    now = datetime(2026, 1, 1, tzinfo=UTC)
    record = EventRecord(
        uuid, camera, cls, severity, "closed" if kind == "ended" else "open", now, now, 0.9, 0.8,
        ended_at=now if kind == "ended" else None, snapshot_path=snapshot, revision=revision,
    )  # fmt: skip
    return EventUpdate(kind, record, None, None)


def make(**policy: float | str) -> tuple[AlertDispatcher, Collect, Clock]:
    sink, clock = Collect(), Clock()
    dispatcher = AlertDispatcher(
        AlertPolicy(**policy),  # type: ignore[arg-type]
        [sink],
        public_url="https://hw.example.com/",
        clock=clock,
    )
    return dispatcher, sink, clock


def test_start_update_end_become_new_update_end_with_before_and_links() -> None:
    dispatcher, sink, clock = make(update_interval_s=0)
    dispatcher(update("started"))
    clock.t += 1
    dispatcher(update("updated", revision=1))
    dispatcher(update("ended", revision=2))
    assert [a.type for a in sink.alerts] == ["new", "update", "end"]
    new, upd, end = sink.alerts
    assert new.before is None and upd.before == new.after and end.before == upd.after
    assert new.snapshot_url == "https://hw.example.com/api/v1/events/e1/snapshot.jpg"
    assert (
        new.clip_url is None and end.clip_url == "https://hw.example.com/api/v1/events/e1/clip.mp4"
    )
    payload = end.payload()
    assert payload["type"] == "end" and payload["event"]["uuid"] == "e1"
    assert payload["delivery_id"] == "e1:2:end" and payload["score"] == 0.9
    assert payload["started_at"].endswith("Z")


@pytest.mark.parametrize(
    ("min_severity", "severity", "alerted"),
    [("warning", "info", False), ("warning", "warning", True), ("critical", "warning", False),
     ("info", "info", True), ("critical", "critical", True)],
)  # fmt: skip
def test_severity_filter(min_severity: str, severity: Severity, alerted: bool) -> None:
    dispatcher, sink, _ = make(min_severity=min_severity)
    dispatcher(update("started", severity=severity))
    dispatcher(update("ended", severity=severity, revision=1))
    assert len(sink.alerts) == (2 if alerted else 0)


def test_cooldown_per_camera_and_class_suppresses_the_whole_event() -> None:
    dispatcher, sink, clock = make(cooldown_s=60)
    dispatcher(update("started", "a"))
    dispatcher(update("ended", "a", revision=1))
    clock.t += 30
    dispatcher(update("started", "b"))  # same camera and class, within the cooldown
    dispatcher(update("ended", "b", revision=1))
    dispatcher(update("started", "c", camera="other"))  # another camera is not affected
    dispatcher(update("started", "d", cls="fire_smoke"))  # nor another class
    clock.t += 31
    dispatcher(update("started", "e"))
    assert [(a.after.uuid, a.type) for a in sink.alerts] == [
        ("a", "new"), ("a", "end"), ("c", "new"), ("d", "new"), ("e", "new"),
    ]  # fmt: skip
    assert dispatcher.suppressed == 1


def test_updates_are_throttled_and_end_always_follows() -> None:
    dispatcher, sink, clock = make(update_interval_s=10)
    dispatcher(update("started"))
    for i in range(1, 6):
        clock.t += 3
        dispatcher(update("updated", revision=i))
    dispatcher(update("ended", revision=6))
    assert [a.type for a in sink.alerts] == ["new", "update", "end"]  # +3..+15: one at +12


def test_a_failing_channel_does_not_stop_the_others() -> None:
    class Broken:
        name = "broken"

        def send(self, alert: Alert) -> None:
            raise RuntimeError("down")

    good = Collect()
    dispatcher = AlertDispatcher(AlertPolicy(), [Broken(), good])
    dispatcher(update("started"))
    assert len(good.alerts) == 1


def test_with_a_token_alert_links_are_signed_for_their_own_path() -> None:
    from urllib.parse import parse_qs, urlsplit

    from hazardwatch.outputs.media_links import MediaSigner

    signer = MediaSigner("t0ken", ttl_s=3600)
    sink = Collect()
    dispatcher = AlertDispatcher(
        AlertPolicy(), [sink], public_url="https://hw.example.com", signer=signer
    )
    dispatcher(update("started"))
    (alert,) = sink.alerts
    assert alert.snapshot_url is not None
    parts = urlsplit(alert.snapshot_url)
    assert parts.path == "/api/v1/events/e1/snapshot.jpg" and "t0ken" not in alert.snapshot_url
    query = parse_qs(parts.query)
    assert signer.verify(parts.path, query["exp"][0], query["sig"][0])
    assert not signer.verify("/api/v1/events/e2/snapshot.jpg", query["exp"][0], query["sig"][0])


def test_clip_ready_follows_an_alerted_end_once_and_no_clip_link_without_clips() -> None:
    dispatcher, sink, _ = make(cooldown_s=3600)
    for step in ("started", "ended"):
        dispatcher(update(step, "e1"))
    dispatcher(update("started", "e2"))  # held back by the cooldown
    dispatcher(update("ended", "e2"))
    with_clip = update("ended", "e1").record
    dispatcher.clip_ready(with_clip)
    dispatcher.clip_ready(with_clip)  # a second link of the same clip: no second alert
    dispatcher.clip_ready(update("ended", "e2").record)  # its end was never alerted
    assert [(a.type, a.after.uuid) for a in sink.alerts] == [
        ("new", "e1"), ("end", "e1"), ("clip_ready", "e1"),
    ]  # fmt: skip
    end, ready = sink.alerts[1], sink.alerts[2]
    assert end.clip_url == ready.clip_url == "https://hw.example.com/api/v1/events/e1/clip.mp4"
    assert ready.payload()["type"] == "clip_ready"

    dispatcher.clips = False  # media.clips off: no link that could never answer
    dispatcher(update("started", "e3", cls="fire_smoke"))
    dispatcher(update("ended", "e3", cls="fire_smoke"))
    assert sink.alerts[-1].type == "end" and sink.alerts[-1].clip_url is None
    dispatcher.clip_ready(update("ended", "e3").record)
    assert sink.alerts[-1].type == "end"
