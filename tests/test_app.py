from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import httpx
import pytest
import sqlalchemy as sa

from hazardwatch.app import RunSummary, Service
from hazardwatch.detect.normal import CameraNormal, decode_embedding
from hazardwatch.outputs.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from hazardwatch.storage.engine import create_engine
from hazardwatch.storage.repository import Repository
from tests.conftest import free_port, service_settings
from tests.fakes import FakeEncoder
from tests.helpers import WebhookReceiver, wait_for


def run_service(
    tmp_path: Path, database_url: str, sources: list[str], **extra: Any
) -> tuple[Service, RunSummary]:
    service = Service(
        service_settings(tmp_path, database_url, sources, **extra),
        encoder_factory=lambda s: FakeEncoder(),
    )
    return service, service.run()


def test_run_turns_a_crash_clip_into_an_event_with_snapshot(
    tmp_path: Path, database_url: str, red_clip: Path
) -> None:
    _, summary = run_service(tmp_path, database_url, [str(red_clip)])
    assert summary.frames_read == 100 and summary.frames_scored > 10
    engine = create_engine(database_url)
    events = Repository(engine).list_events()
    assert len(events) == 1, events
    event = events[0]
    assert event.class_name == "traffic_accident" and event.severity == "critical"
    assert event.status == "closed" and event.ended_at is not None
    assert event.model_name == "fake-crash-detector" and event.prompt_bank_version
    # The square is in view from 2 s to 6 s of the clip; the event lies within it, give or
    # take smoothing and the minimum duration.
    duration = (event.ended_at - event.started_at).total_seconds()
    assert 2.0 <= duration <= 6.5
    assert event.peak_score > 0.9
    assert event.snapshot_path is not None
    snapshot = tmp_path / "media" / event.snapshot_path
    assert snapshot.read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG
    with engine.connect() as conn:
        scores = conn.execute(sa.text("SELECT COUNT(*) FROM scores")).scalar_one()
        cameras = conn.execute(sa.text("SELECT name, source_kind FROM cameras")).all()
    assert scores > 0 and [tuple(c) for c in cameras] == [("crash", "file")]
    assert event.started_at.tzinfo is not None
    engine.dispose()


def test_one_bad_camera_does_not_stop_the_others(tmp_path: Path, red_clip: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hw.db'}"
    _, summary = run_service(tmp_path, url, [str(red_clip), "rtsp://", str(tmp_path / "nope.mp4")])
    assert summary.cameras == 2  # the malformed URL is skipped, the missing file ends
    assert summary.frames_read == 100


@pytest.fixture
def tiny_weights(tiny_clip_weights: Path) -> Path:
    return tiny_clip_weights


def _cli(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAZARDWATCH_")}
    return subprocess.Popen(
        [sys.executable, "-m", "hazardwatch", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_cli_run_to_the_end_of_a_file(tmp_path: Path, tiny_weights: Path, red_clip: Path) -> None:
    process = _cli(
        ["run", "--source", str(red_clip), "--model", str(tiny_weights), "--no-api"], tmp_path
    )
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "1 camera(s), 100 frames read" in out
    assert (tmp_path / "data" / "hazardwatch.db").is_file()
    # A normal run and shutdown warn about nothing (clip's pkg_resources notice included).
    assert "Warning" not in err and " WARNING " not in err, err


def test_cli_run_stops_cleanly_on_sigterm(
    tmp_path: Path, tiny_weights: Path, red_clip: Path
) -> None:
    process = _cli(
        ["run", "--source", str(red_clip), "--loop", "--model", str(tiny_weights),
         "--api-port", str(free_port())],
        tmp_path,
    )  # fmt: skip
    time.sleep(8)  # model load, migrations, a few seconds of frames
    assert process.poll() is None, process.communicate()[1]
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert time.monotonic() - sent < 10
    assert "frames read" in out
    assert "Warning" not in err and " WARNING " not in err, err  # a normal shutdown


def test_cli_run_with_missing_weights_is_a_clear_error(tmp_path: Path, red_clip: Path) -> None:
    process = _cli(["run", "--source", str(red_clip), "--model", "ViT-B/32", "--no-api"], tmp_path)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1
    assert "ViT-B-32.pt" in err and "--model" in err and "Traceback" not in err


def test_run_sends_signed_webhooks_mqtt_and_writes_a_clip(
    tmp_path: Path, sqlite_url: str, red_clip: Path
) -> None:
    from paho.mqtt import subscribe  # noqa: F401 - the broker must be importable

    from tests.outputs.test_mqtt import HOST, PORT, Listener

    receiver = WebhookReceiver(free_port()).start()
    prefix = f"hwrun-{uuid.uuid4().hex[:8]}"
    listener = Listener(f"{prefix}/#")
    try:
        run_service(
            tmp_path, sqlite_url, [str(red_clip)],
            alerts={"webhook": {"url": receiver.url, "secret": "k3y"},
                    "mqtt": {"host": HOST, "port": PORT, "topic_prefix": prefix}},
            api={"public_url": "http://hw.local:8080"},
        )  # fmt: skip
        assert wait_for(lambda: len(listener.on(f"{prefix}/events")) >= 3, 5)
    finally:
        receiver.stop()
        listener.close()
    types = [r.json()["type"] for r in receiver.received]
    assert types[0] == "new" and types[-2:] == ["end", "clip_ready"]
    for got in receiver.received:
        headers = {k.lower(): v for k, v in got.headers.items()}
        assert verify_signature(
            "k3y", headers[TIMESTAMP_HEADER.lower()], got.body, headers[SIGNATURE_HEADER.lower()]
        )
    new = receiver.received[0].json()
    assert new["class_name"] == "traffic_accident" and new["camera"] == "crash"
    assert new["snapshot_url"].startswith("http://hw.local:8080/api/v1/events/")
    mqtt_types = [json.loads(m.payload)["type"] for m in listener.on(f"{prefix}/events")]
    assert mqtt_types[0] == "new" and mqtt_types[-2:] == ["end", "clip_ready"]
    ready = receiver.received[-1].json()
    assert ready["clip_url"].endswith(f"/api/v1/events/{ready['event']['uuid']}/clip.mp4")
    assert ready["event"]["clip_path"] == f"crash/{ready['event']['uuid']}.mp4"
    assert listener.on(f"{prefix}/crash/traffic_accident")[-1].payload == b"OFF"
    # The clip: pre-roll + event frames, linked on the event, playable.
    event = Repository(create_engine(sqlite_url)).list_events()[0]
    assert event.clip_path == f"crash/{event.uuid}.mp4"
    capture = cv2.VideoCapture(str(tmp_path / "media" / event.clip_path))
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    duration = (event.ended_at - event.started_at).total_seconds()  # type: ignore[operator]
    assert frames / fps >= duration  # the whole event, plus pre-roll
    assert not list((tmp_path / "media").rglob(".*"))  # no partial files left


def test_api_serves_a_running_service(tmp_path: Path, sqlite_url: str, red_clip: Path) -> None:
    settings = service_settings(tmp_path, sqlite_url, [str(red_clip)], loop=True)
    service = Service(settings, encoder_factory=lambda s: FakeEncoder())
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{settings.api.port}"
    try:
        assert wait_for(lambda: _get(base + "/healthz") == 200, 30)
        assert wait_for(lambda: _get(base + "/readyz") == 200, 30)
        events: list[dict[str, Any]] = []

        def has_event() -> bool:
            events[:] = httpx.get(base + "/api/v1/events").json()["items"]
            return bool(events) and events[0]["snapshot_url"] is not None

        assert wait_for(has_event, 30, interval=0.2)
        snap = httpx.get(base + events[0]["snapshot_url"])
        assert snap.status_code == 200 and snap.content[:3] == b"\xff\xd8\xff"
        cameras = httpx.get(base + "/api/v1/cameras").json()["items"]
        assert cameras[0]["name"] == "crash" and cameras[0]["state"] == "streaming"
        assert cameras[0]["fps"] > 0 and cameras[0]["last_frame_age_s"] < 5
        assert cameras[0]["open_events"] in (0, 1)
        tile = httpx.get(base + "/api/v1/cameras/crash/latest.jpg")
        assert tile.status_code == 200 and tile.content[:3] == b"\xff\xd8\xff"
        metrics = httpx.get(base + "/metrics").text
        assert 'hazardwatch_frames_read_total{camera="crash"}' in metrics
        assert 'hazardwatch_events_total{camera="crash",class_name="traffic_accident"' in metrics
        assert 'hazardwatch_camera_up{camera="crash"} 1.0' in metrics
        motion = re.search(r'hazardwatch_frames_motion_total\{camera="crash"\} (\S+)', metrics)
        assert motion is not None and float(motion.group(1)) > 0  # the red square moved
    finally:
        service.stop()
        thread.join(30)
    assert not thread.is_alive()
    assert _get(base + "/healthz") is None  # the API stopped with the service


def test_a_recorded_rtsp_camera_gets_full_rate_clips(
    tmp_path: Path, sqlite_url: str, red_clip: Path
) -> None:
    """A real RTSP camera with `record: true`: the service reads it for scoring and records
    it on a second session; the event's clip is the camera's own H.264 at its 10 fps,
    cut from the segments, where the sampled clip would be 3 fps.

    A webhook receiver fetches every link as its alert arrives (issue 29.2): the `end`
    alert's clip link answers 202 with Retry-After while the clip is cut, never 404, and a
    `clip_ready` alert follows whose link answers the clip."""
    from tests.capture.test_recorder import probe
    from tests.conftest import RtspServer, make_h264_clip

    source = make_h264_clip(tmp_path / "crash.mp4", 10, size="320x240", source=red_clip)
    server = RtspServer(source, free_port())
    server.start()
    camera = {"name": "gate", "url": server.url, "record": True}
    port = free_port()
    fetched: list[tuple[str, str, int, str | None]] = []  # (alert, link, status, Retry-After)

    def fetch_links(got: Any) -> None:
        body = got.json()
        for link in ("snapshot_url", "clip_url"):
            if body[link]:
                answer = httpx.get(body[link], timeout=5)
                fetched.append(
                    (body["type"], link, answer.status_code, answer.headers.get("retry-after"))
                )

    receiver = WebhookReceiver(free_port(), on_receive=fetch_links).start()
    settings = service_settings(
        tmp_path, sqlite_url, [], cameras=[camera],
        recording={"segment_s": 1, "postroll_s": 1},
        alerts={"webhook": {"url": receiver.url}},
        api={"port": port, "public_url": f"http://127.0.0.1:{port}"},
    )  # fmt: skip
    service = Service(settings, encoder_factory=lambda s: FakeEncoder())
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{settings.api.port}"
    try:
        assert wait_for(lambda: _get(base + "/readyz") == 200, 30)
        recording = httpx.get(base + "/api/v1/cameras").json()["items"][0]["recording"]
        assert recording == {"state": "recording", "restarts": 0, "last_error": None}
        assert (
            'hazardwatch_camera_recording{camera="gate"} 1.0' in httpx.get(base + "/metrics").text
        )

        def clip_linked() -> bool:
            items = httpx.get(base + "/api/v1/events").json()["items"]
            return any(e["clip_url"] for e in items)

        assert wait_for(clip_linked, 60, interval=0.5)
        assert wait_for(lambda: any(f[0] == "clip_ready" for f in fetched), 10, interval=0.2)
    finally:
        service.stop()
        thread.join(30)
        server.stop()
        receiver.stop()
    assert all(status in (200, 202) for _, _, status, _ in fetched), fetched
    ends = [f for f in fetched if f[0] == "end" and f[1] == "clip_url"]
    assert ends and all(status == 202 and int(str(wait)) >= 1 for _, _, status, wait in ends)
    ready = [f for f in fetched if f[0] == "clip_ready" and f[1] == "clip_url"]
    assert ready and all(status == 200 for _, _, status, _ in ready)
    event = next(e for e in Repository(create_engine(sqlite_url)).list_events() if e.clip_path)
    info = probe(tmp_path / "media" / str(event.clip_path))
    assert info["codec_name"] == "h264" and info["r_frame_rate"] == "10/1"
    frames = int(str(info["nb_read_frames"]))
    duration = (event.ended_at - event.started_at).total_seconds()  # type: ignore[operator]
    assert frames >= 10 * (duration + 1)  # every frame of the event and the post-roll
    segments = list((tmp_path / "media" / "segments" / "gate").glob("*.mp4"))
    assert len(segments) >= 3


def test_events_carry_the_weather_at_their_camera(
    tmp_path: Path, sqlite_url: str, red_clip: Path
) -> None:
    """A camera with a location, the weather service a real local Open-Meteo stand-in: the
    stored event, the API and the webhook's later alerts carry "slight rain"."""
    from tests.outputs.test_mqtt import HOST, PORT, Listener
    from tests.outputs.test_weather import OpenMeteo

    meteo = OpenMeteo()
    receiver = WebhookReceiver(free_port()).start()
    prefix = f"hwwx-{uuid.uuid4().hex[:8]}"
    listener = Listener(f"{prefix}/events")
    camera = {"name": "crash", "url": str(red_clip), "location": {"lat": 52.52, "lon": 13.41}}
    try:
        run_service(
            tmp_path, sqlite_url, [], cameras=[camera], weather={"base_url": meteo.url},
            alerts={"webhook": {"url": receiver.url},
                    "mqtt": {"host": HOST, "port": PORT, "topic_prefix": prefix}},
        )  # fmt: skip
        assert wait_for(lambda: len(listener.on(f"{prefix}/events")) >= 3, 5)
    finally:
        meteo.stop()
        receiver.stop()
        listener.close()
    messages = [json.loads(m.payload) for m in listener.on(f"{prefix}/events")]
    assert [m["type"] for m in messages][-2:] == ["end", "clip_ready"]
    for message in messages[-2:]:
        assert message["after"]["weather"]["text"] == "slight rain"
    event = Repository(create_engine(sqlite_url)).list_events()[0]
    assert event.weather is not None and event.weather.text == "slight rain"
    assert event.weather.visibility_m == 8400.0
    end = receiver.received[-2].json()
    assert end["type"] == "end" and end["weather"]["text"] == "slight rain"
    assert end["weather"]["code"] == 61 and end["weather"]["observed_at"] == "2026-11-22T17:45:00Z"


def test_a_weather_outage_does_not_delay_events(
    tmp_path: Path, sqlite_url: str, red_clip: Path
) -> None:
    """The same clip with no weather, and with a weather service that hangs past its
    timeout: the event is stored as soon after the start (measured, printed)."""
    from tests.outputs.test_weather import OpenMeteo

    meteo = OpenMeteo()
    meteo.mode, meteo.delay_s = "slow", 10.0
    delays = {}
    try:
        for name, location in (("off", None), ("outage", {"lat": 52.52, "lon": 13.41})):
            heard: list[float] = []
            camera = {"name": "crash", "url": str(red_clip), "location": location}
            settings = service_settings(
                tmp_path / name, sqlite_url.replace(".db", f"-{name}.db"), [],
                cameras=[camera], weather={"base_url": meteo.url, "timeout_s": 5.0},
            )  # fmt: skip
            service = Service(
                settings,
                encoder_factory=lambda s: FakeEncoder(),
                event_listeners=[lambda u, heard=heard: heard.append(time.monotonic())],
            )
            began = time.monotonic()
            service.run()
            delays[name] = heard[0] - began
    finally:
        meteo.stop()
    assert len(meteo.requests) >= 1  # the outage run did ask
    print(f"first event stored {delays['off']:.2f} s after start without weather, "
          f"{delays['outage']:.2f} s with the weather service hanging")  # fmt: skip
    assert delays["outage"] < delays["off"] + 1.0


def _get(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


def test_false_alarm_feedback_silences_that_sight_for_good_but_not_another(
    tmp_path: Path, sqlite_url: str
) -> None:
    """Run 1: a red sign parked left of the view alerts; the operator says false alarm.
    Run 2 (a restart, the same camera): the same sign, then a red object on the right:
    only the second alerts. The reference survives the restart through the database."""
    from tests.fakes import write_red_square_clip

    first = tmp_path / "one" / "gate.mp4"
    second = tmp_path / "two" / "gate.mp4"  # same stem: the same camera name
    first.parent.mkdir()
    second.parent.mkdir()
    write_red_square_clip(str(first), seconds=8, busy=True, parked={60: (2.0, 6.0)})
    write_red_square_clip(
        str(second), seconds=20, busy=True, parked={60: (2.0, 6.0), 170: (13.0, 17.0)}
    )
    settings = service_settings(tmp_path, sqlite_url, [str(first)], loop=True)
    service = Service(settings, encoder_factory=lambda s: FakeEncoder())
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{settings.api.port}"
    try:
        assert wait_for(lambda: _get(base + "/healthz") == 200, 30)
        events: list[dict[str, Any]] = []

        def has_event() -> bool:
            events[:] = httpx.get(base + "/api/v1/events", timeout=5).json()["items"]
            return bool(events)

        assert wait_for(has_event, 60, interval=0.2)
        url = f"{base}/api/v1/events/{events[0]['uuid']}/feedback"
        assert httpx.post(url, json={"verdict": "maybe"}, timeout=5).status_code == 422
        assert httpx.post(url, json={"note": "no verdict"}, timeout=5).status_code == 422
        missing = f"{base}/api/v1/events/{uuid.uuid4()}/feedback"
        assert httpx.post(missing, json={"verdict": "confirmed"}, timeout=5).status_code == 404
        answer = httpx.post(
            url, json={"verdict": "false_alarm", "note": "the red sign"}, timeout=5
        ).json()
        assert answer["normal_references"] == 1
        assert answer["event"]["verdict"] == "false_alarm"
        listed = httpx.get(base + "/api/v1/events?verdict=false_alarm", timeout=5).json()
        assert [e["uuid"] for e in listed["items"]] == [events[0]["uuid"]]
    finally:
        service.stop()
        thread.join(30)
    assert not thread.is_alive()

    engine = create_engine(sqlite_url)
    repository = Repository(engine)
    before = {e.uuid for e in repository.list_events()}
    assert json.loads(repository.load_camera_states()["gate"])["references"]["dim"] == 64
    run_service(tmp_path, sqlite_url, [str(second)])
    old = repository.get_event(events[0]["uuid"])
    new = [e for e in repository.list_events() if e.uuid not in before]
    engine.dispose()
    # The sign on the left is known now; only the object on the right alerts.
    assert len(new) == 1, new
    assert old is not None and old.peak_embedding and new[0].peak_embedding
    known = decode_embedding(old.peak_embedding)
    assert float(known @ decode_embedding(new[0].peak_embedding)) < 0.95


def test_run_without_cameras_serves_the_api_until_stopped(tmp_path: Path, sqlite_url: str) -> None:
    settings = service_settings(tmp_path, sqlite_url, [])
    engine = create_engine(sqlite_url)
    from hazardwatch.storage import migrate

    migrate.upgrade(engine)
    stored = "20000000-0000-4000-8000-000000000001"
    from datetime import UTC, datetime

    from hazardwatch.records import EventRecord

    now = datetime.now(UTC)
    Repository(engine).upsert_event(
        EventRecord(stored, "gate", "fire_smoke", "critical", "closed", now, now, 0.9, 0.8)
    )
    engine.dispose()
    service = Service(settings, encoder_factory=lambda s: FakeEncoder())
    summary: list[RunSummary] = []
    thread = threading.Thread(target=lambda: summary.append(service.run()), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{settings.api.port}"
    try:
        assert wait_for(lambda: _get(base + "/healthz") == 200, 30)
        items = httpx.get(base + "/api/v1/events", timeout=5).json()["items"]
        assert [e["uuid"] for e in items] == [stored]
        assert httpx.get(base + "/api/v1/cameras", timeout=5).json()["items"] == []

        def not_ready_for_the_right_reason() -> bool:
            answer = httpx.get(base + "/readyz", timeout=5)
            return answer.status_code == 503 and any(
                "no camera configured" in r for r in answer.json()["reasons"]
            )

        assert wait_for(not_ready_for_the_right_reason, 30)
        time.sleep(0.5)
        assert thread.is_alive()  # no file to end: it runs until told to stop
    finally:
        service.stop()
        thread.join(30)
    assert not thread.is_alive() and summary and summary[0].cameras == 0


def test_metrics_disabled_serves_no_metrics_endpoint(tmp_path: Path, sqlite_url: str) -> None:
    """`metrics.enabled: false` turns /metrics off on `run` and on a role's status port
    (it used to be served anyway)."""
    from hazardwatch.metrics import Metrics
    from hazardwatch.roles import start_status

    settings = service_settings(tmp_path, sqlite_url, [], metrics={"enabled": False})
    service = Service(settings, encoder_factory=lambda s: FakeEncoder())
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{settings.api.port}"
    try:
        assert wait_for(lambda: _get(base + "/healthz") == 200, 30)
        assert _get(base + "/metrics") == 404
    finally:
        service.stop()
        thread.join(30)
    for enabled, expected in ((False, 404), (True, 200)):
        status = start_status(
            "capture",
            service_settings(tmp_path, sqlite_url, [], metrics={"enabled": enabled}),
            0,
            Metrics(role="capture"),
            list,
        )
        try:
            assert _get(f"http://127.0.0.1:{status.port}/metrics") == expected
            assert _get(f"http://127.0.0.1:{status.port}/healthz") == 200
        finally:
            status.stop()


def test_run_without_cameras_and_without_api_is_a_clear_error(
    tmp_path: Path, sqlite_url: str
) -> None:
    from hazardwatch.errors import HazardwatchError

    settings = service_settings(tmp_path, sqlite_url, [], api={"enabled": False})
    with pytest.raises(HazardwatchError, match="no camera could be started and the API is off"):
        Service(settings, encoder_factory=lambda s: FakeEncoder()).run()


# ---------------------------------------------------------------------------- reload


def test_a_reload_adds_and_removes_cameras_and_closes_the_removed_ones_events(
    tmp_path: Path, sqlite_url: str
) -> None:
    from tests.fakes import write_red_square_clip

    long_red = tmp_path / "long.mp4"  # a red object in view from 1 s to the end: one long event
    write_red_square_clip(str(long_red), seconds=30, on=(1.0, 30.0))
    quiet = tmp_path / "quiet.mp4"
    write_red_square_clip(str(quiet), seconds=10, on=(99.0, 99.0))
    first = service_settings(tmp_path, sqlite_url, [str(long_red)], loop=True)
    cameras = [{"name": "yard", "url": str(quiet), "loop": True}]
    from hazardwatch.settings import load_settings

    second = first.model_copy(update={"cameras": load_settings(None, cameras=cameras).cameras})
    service = Service(
        first, encoder_factory=lambda s: FakeEncoder(), reload_settings=lambda: second
    )
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{first.api.port}"
    try:
        assert wait_for(lambda: _get(base + "/healthz") == 200, 30)

        def open_events() -> list[dict[str, Any]]:
            answer = httpx.get(base + "/api/v1/events", params={"status": "open"}, timeout=5)
            return list(answer.json()["items"])

        assert wait_for(lambda: bool(open_events()), 30, interval=0.2)
        (event,) = open_events()
        assert event["camera"] == "long"
        service.request_reload()

        def cameras_now() -> list[str]:
            items = httpx.get(base + "/api/v1/cameras", timeout=5).json()["items"]
            return [c["name"] for c in items]

        assert wait_for(lambda: cameras_now() == ["yard"], 30, interval=0.2)
        assert wait_for(lambda: not open_events(), 10, interval=0.2)
        closed = httpx.get(f"{base}/api/v1/events/{event['uuid']}", timeout=5).json()
        assert closed["status"] == "closed" and closed["ended_at"] is not None
        assert thread.is_alive()
    finally:
        service.stop()
        thread.join(30)
    assert not thread.is_alive()


def test_sighup_reloads_instead_of_killing_and_a_bad_file_keeps_the_running_setup(
    tmp_path: Path, tiny_weights: Path, red_clip: Path
) -> None:
    port = free_port()
    config = tmp_path / "hw.yaml"
    database = f"sqlite:///{tmp_path / 'hw.db'}"

    def write(names: list[str]) -> None:
        cameras = "".join(f"  - {{name: {n}, url: '{red_clip}', loop: true}}\n" for n in names)
        config.write_text(
            f"cameras:\n{cameras}api: {{port: {port}}}\n"
            f"storage: {{database_url: '{database}', data_dir: '{tmp_path / 'data'}'}}\n"
            f"media: {{dir: '{tmp_path / 'media'}'}}\n"
        )

    write(["one"])
    process = _cli(["run", "--config", str(config), "--model", str(tiny_weights)], tmp_path)
    base = f"http://127.0.0.1:{port}"

    def cameras_now() -> list[str] | None:
        try:
            items = httpx.get(base + "/api/v1/cameras", timeout=2).json()["items"]
        except httpx.HTTPError:
            return None
        return sorted(c["name"] for c in items)

    try:
        assert wait_for(lambda: cameras_now() == ["one"], 90, interval=0.3), process.poll()
        write(["one", "two"])
        process.send_signal(signal.SIGHUP)
        assert wait_for(lambda: cameras_now() == ["one", "two"], 30, interval=0.3)
        config.write_text("cameras: [ {this is not yaml")
        process.send_signal(signal.SIGHUP)
        time.sleep(1.5)
        assert process.poll() is None and cameras_now() == ["one", "two"]
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err[-2000:]
    assert "configuration reloaded" in err and "configuration not reloaded" in err


def test_queue_capacity_is_reported_when_the_queue_is_empty() -> None:
    from hazardwatch.handoff.queue import LocalQueue
    from hazardwatch.metrics import Metrics, PipelineCollector, PipelineView

    view = PipelineView()
    view.queue = LocalQueue(64)
    metrics = Metrics()
    metrics.registry.register(PipelineCollector(view))
    text = metrics.render().decode()
    assert "hazardwatch_queue_capacity 64.0" in text
    assert "hazardwatch_queue_depth 0.0" in text


def test_a_calibrated_camera_keeps_its_verdicts_and_a_newer_calibration_is_never_overwritten(
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 29.1: calibrate, run, a false-alarm verdict, stop: the stored state holds the
    verdict's reference (a restart loads it). A calibration made while a second run is
    going is what stays stored after that run's saves and its shutdown."""
    from hazardwatch import calibration
    from hazardwatch.calibration import calibrate_camera
    from tests.fakes import write_red_square_clip

    monkeypatch.setattr(calibration, "load_encoder", lambda settings: FakeEncoder())
    quiet = tmp_path / "quiet.mp4"
    write_red_square_clip(str(quiet), seconds=4, busy=True, on=(99.0, 99.0))
    clip = tmp_path / "gate.mp4"
    write_red_square_clip(str(clip), seconds=8, busy=True, parked={60: (2.0, 6.0)})
    settings = service_settings(tmp_path, database_url, [str(clip)], loop=True)
    calibrate_camera(settings, "gate", quiet)
    engine = create_engine(database_url)
    repository = Repository(engine)

    def stored() -> dict[str, Any]:
        return dict(json.loads(repository.load_camera_states()["gate"]))

    def references() -> int:
        return len(CameraNormal.from_json(stored()).references)

    def updated_at() -> Any:
        with engine.connect() as conn:
            return conn.execute(
                sa.text("SELECT updated_at FROM camera_states WHERE camera = 'gate'")
            ).scalar_one()

    calibration = stored()
    assert calibration["source"] == "calibrated" and references() == 1
    calibrated_row_at = updated_at()

    service = Service(settings, encoder_factory=lambda s: FakeEncoder())
    thread = threading.Thread(target=service.run, daemon=True)
    with caplog.at_level("INFO", logger="hazardwatch.events_side"):
        thread.start()
        assert wait_for(lambda: "camera gate: calibrated" in caplog.text, 30)
    assert "on 4 s of footage, 1 normal reference(s)" in caplog.text
    base = f"http://127.0.0.1:{settings.api.port}"
    try:
        events: list[dict[str, Any]] = []

        def has_event() -> bool:
            if _get(base + "/healthz") != 200:
                return False
            events[:] = httpx.get(base + "/api/v1/events", timeout=5).json()["items"]
            return bool(events)

        assert wait_for(has_event, 60, interval=0.2)
        camera = httpx.get(base + "/api/v1/cameras", timeout=5).json()["items"][0]
        assert camera["calibration"]["calibrated"] is True
        assert camera["calibration"]["calibrated_s"] == pytest.approx(4.0, abs=0.2)
        assert camera["calibration"]["calibrated_at"].endswith("Z")
        answer = httpx.post(
            f"{base}/api/v1/events/{events[0]['uuid']}/feedback",
            json={"verdict": "false_alarm"},
            timeout=5,
        ).json()
        assert answer["normal_references"] == 2
    finally:
        service.stop()
        thread.join(30)
    assert not thread.is_alive()
    after = stored()
    assert references() == 2, "the verdict was lost at shutdown"
    assert after["calibrated_at"] == calibration["calibrated_at"]
    assert updated_at() != calibrated_row_at

    # A second run; while it goes, the operator calibrates the camera again. The run's
    # later saves (a verdict's, the shutdown's) must not overwrite that calibration.
    service = Service(settings, encoder_factory=lambda s: FakeEncoder())
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: _get(base + "/healthz") == 200, 30)
        time.sleep(0.5)
        recalibrated = calibrate_camera(settings, "gate", quiet)
        assert wait_for(has_event, 60, interval=0.2)
        httpx.post(
            f"{base}/api/v1/events/{events[0]['uuid']}/feedback",
            json={"verdict": "false_alarm"},
            timeout=5,
        )
    finally:
        service.stop()
        thread.join(30)
    final, kept = stored(), references()
    engine.dispose()
    assert final["calibrated_at"] == recalibrated.calibrated_at and kept == 1


def test_a_file_camera_that_ends_closes_its_events_at_once_and_stamps_nothing_ahead(
    tmp_path: Path, sqlite_url: str
) -> None:
    """Issue 29.3: a file without `loop` beside a looping camera. It decodes in well under
    its 8 s and ends in the middle of an event; that event is closed as soon as its last
    frame is through, while the run goes on, and no stored time (event or score row) is
    ahead of the wall clock."""
    from tests.fakes import write_red_square_clip

    quiet = tmp_path / "quiet.mp4"
    write_red_square_clip(str(quiet), seconds=4, on=(99.0, 99.0))
    crash = tmp_path / "crash.mp4"
    write_red_square_clip(str(crash), seconds=8, on=(2.0, 99.0))  # in view to the end
    cameras = [
        {"name": "yard", "url": str(quiet), "loop": True},
        {"name": "crash", "url": str(crash)},
    ]
    settings = service_settings(tmp_path, sqlite_url, [], cameras=cameras)
    service = Service(settings, encoder_factory=lambda s: FakeEncoder())
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    engine = create_engine(sqlite_url)
    repository = Repository(engine)
    base = f"http://127.0.0.1:{settings.api.port}"
    try:

        def crash_ended() -> bool:
            if _get(base + "/healthz") != 200:
                return False
            items = httpx.get(base + "/api/v1/cameras", timeout=5).json()["items"]
            return any(c["name"] == "crash" and c["state"] == "ended" for c in items)

        assert wait_for(crash_ended, 30, interval=0.1)
        ended_at = time.time()

        def closed() -> bool:
            events = repository.list_events()
            return bool(events) and all(e.status == "closed" for e in events)

        assert wait_for(closed, 5, interval=0.1), repository.list_events()
        assert time.time() - ended_at < 5
        assert thread.is_alive()  # the looping camera keeps the run going
        now = datetime.now(UTC)
        events = repository.list_events()
        for event in events:
            assert event.started_at <= now and event.ended_at is not None
            assert event.ended_at <= now and event.peak_at <= now
        with engine.connect() as conn:
            newest = conn.execute(sa.text("SELECT MAX(ts) FROM scores")).scalar_one()
        newest = newest if isinstance(newest, datetime) else datetime.fromisoformat(newest)
        assert newest.replace(tzinfo=UTC) <= now
    finally:
        service.stop()
        thread.join(30)
        engine.dispose()


def test_an_api_open_to_the_network_without_a_token_refuses_to_start(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 30.6: a deployment that leaves its API open refuses to start, saying why."""
    from hazardwatch.cli import main
    from hazardwatch.errors import ConfigError

    settings = service_settings(tmp_path, sqlite_url, [], api={"host": "0.0.0.0"})
    with pytest.raises(ConfigError, match=r"api.host is 0.0.0.0.*set api.token"):
        Service(settings, encoder_factory=lambda s: FakeEncoder()).run()
    config = tmp_path / "hw.yaml"
    config.write_text("api: {host: 0.0.0.0}\n")
    assert main(["config", "check", "--config", str(config)]) == 2
    assert "set api.token" in capsys.readouterr().err
    config.write_text("api: {host: 0.0.0.0, token: s3cret-t0ken}\n")
    assert main(["config", "check", "--config", str(config)]) == 0


def test_a_class_added_through_the_api_raises_events_without_a_restart(
    tmp_path: Path, sqlite_url: str
) -> None:
    """The running service takes a new class within seconds: scores for it, then its
    events. (The fake encoder reads "overturned" as a crash: the red square, which comes
    into view 10 s into the clip, after the class is added.)"""
    from tests.fakes import write_red_square_clip

    clip = tmp_path / "late.mp4"
    write_red_square_clip(str(clip), seconds=16.0, on=(10.0, 15.0))
    settings = service_settings(tmp_path, sqlite_url, [str(clip)], loop=True)  # paced
    service = Service(settings, encoder_factory=lambda s: FakeEncoder())
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{settings.api.port}"
    try:
        assert wait_for(lambda: _get(base + "/readyz") == 200, 30)
        added = httpx.post(
            base + "/api/v1/classes",
            json={"name": "overturned_truck", "severity": "critical",
                  "prompts": ["an overturned truck"]},
        )  # fmt: skip
        assert added.status_code == 201, added.text

        def its_events() -> list[dict[str, Any]]:
            got = httpx.get(base + "/api/v1/events", params={"class": "overturned_truck"})
            return list(got.json()["items"])

        assert wait_for(lambda: bool(its_events()), 60, interval=0.5)
        event = its_events()[0]
        assert event["severity"] == "critical"
        assert event["prompt_bank_version"] == added.json()["version"]
        metrics = httpx.get(base + "/metrics").text
        assert 'class_name="overturned_truck"' in metrics
    finally:
        service.stop()
        thread.join(60)
    assert not thread.is_alive()
