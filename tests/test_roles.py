"""The distributed roles over a private nats-server give what `hazardwatch run` gives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hazardwatch.app import Service
from hazardwatch.roles import CaptureNode, EventsNode, WorkerNode
from hazardwatch.settings import Settings
from hazardwatch.storage.engine import create_engine
from hazardwatch.storage.repository import Repository
from tests.conftest import NatsServer, free_port, service_settings
from tests.fakes import FakeEncoder
from tests.helpers import wait_for

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def outcome(database_url: str, camera: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Events and score rows with times relative to the first score row (each run's file
    clock starts when its reader does)."""
    repo = Repository(create_engine(database_url))
    rows = repo.list_scores(camera, EPOCH, datetime.now(UTC) + timedelta(days=1))
    assert rows, "no score rows"
    t0 = rows[0].ts

    def rel(t: datetime | None) -> float | None:
        return None if t is None else round((t - t0).total_seconds(), 3)

    scores = [(rel(r.ts), r.class_name, r.score, r.signal) for r in rows]
    events = sorted(
        (e.class_name, e.severity, e.status, rel(e.started_at), rel(e.ended_at), rel(e.peak_at),
         round(e.peak_score, 4), round(e.mean_score, 4))
        for e in repo.list_events(camera=camera)
    )  # fmt: skip
    return events, scores


def settings_for(tmp_path: Path, name: str, clip: Path, **extra: Any) -> tuple[Settings, str]:
    url = f"sqlite:///{tmp_path / name}.db"
    return service_settings(tmp_path / name, url, [str(clip)], **extra), url


def test_roles_store_the_same_events_and_scores_as_one_process(
    tmp_path: Path, red_clip: Path, nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """1 capture, 3 workers, 1 events service against `hazardwatch run`, on a file with the
    deterministic fake encoder: same events, same score rows (times exact, values within
    1e-4). Frames travel as PNG here so the pixels are the ones the single process scored."""
    single, single_url = settings_for(tmp_path, "single", red_clip)
    Service(single, encoder_factory=lambda s: FakeEncoder()).run()

    broker = {"url": nats_server.url, "image_format": "png", "reorder_window_s": 0.5}
    roles, roles_url = settings_for(tmp_path, "roles", red_clip, broker=broker)
    events = EventsNode(roles)
    events_thread = threading.Thread(target=events.run, daemon=True)
    caplog.set_level("INFO", logger="hazardwatch.roles")
    events_thread.start()
    workers = [WorkerNode(roles, encoder_factory=lambda s: FakeEncoder(), api_port=0)
               for _ in range(3)]  # fmt: skip
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    try:
        assert wait_for(lambda: all(w.worker is not None for w in workers), 30)
        capture = CaptureNode(roles, api_port=0).run()
        assert capture.frames_published > 0
        scored = lambda: sum(w.worker.stats.frames for w in workers if w.worker)  # noqa: E731
        assert wait_for(lambda: scored() >= capture.frames_published, 30)
        time.sleep(roles.broker.reorder_window_s + 2.0)  # the events side takes the last ones
    finally:
        for worker in workers:
            worker.stop()
        for thread in threads:
            thread.join(30)
        events.stop()
        events_thread.join(60)
    assert not events_thread.is_alive()
    assert scored() == capture.frames_published  # none lost, none twice
    # No fault, no loss (issue 29.8): the events service counted none lost and none late.
    assert f"events: {capture.frames_published} scored frame(s) handled, 0 lost, 0 too late" in (
        caplog.text
    )
    assert sum(1 for w in workers if w.worker and w.worker.stats.frames) >= 2  # shared out
    want_events, want_scores = outcome(single_url, "crash")
    got_events, got_scores = outcome(roles_url, "crash")
    assert got_events == want_events and len(want_events) >= 1
    assert len(want_scores) >= 50  # every class, each sampled second of the clip
    assert [s[:2] for s in got_scores] == [s[:2] for s in want_scores]  # times exact
    for got, want in zip(got_scores, want_scores, strict=True):
        assert got[2] == pytest.approx(want[2], abs=1e-4)
        assert (got[3] is None) == (want[3] is None)
        if want[3] is not None:
            assert got[3] == pytest.approx(want[3], abs=1e-4)


@pytest.mark.parametrize("role", ["capture", "worker", "events"])
def test_a_role_without_a_broker_says_how_to_set_one(
    role: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hazardwatch.cli import main

    config = tmp_path / "hw.yaml"
    config.write_text("cameras: []\n")
    assert main([role, "--config", str(config)]) == 2
    assert "set broker.url (nats://host:4222)" in capsys.readouterr().err


def test_the_capture_role_runs_from_the_command_line(
    tmp_path: Path, red_clip: Path, nats_server: NatsServer
) -> None:
    """`hazardwatch capture` as its own process on a file: it logs its status port,
    publishes every gated frame and exits 0 at the file's end."""
    config = tmp_path / "hw.yaml"
    config.write_text(
        f"cameras:\n  - {{name: crash, url: '{red_clip}'}}\nbroker:\n  url: {nats_server.url}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "hazardwatch", "capture", "--config", str(config),
         "--api-port", "0"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "RoleSummary(role='capture', cameras=1, frames_read=100" in done.stdout
    assert "capture: /healthz, /readyz and /metrics on http://127.0.0.1:" in done.stderr


def test_the_capture_role_reloads_its_cameras_on_sighup(
    tmp_path: Path, red_clip: Path, nats_server: NatsServer
) -> None:
    """SIGHUP re-reads the file: a camera added starts publishing while the first runs
    on; a file that does not load keeps the running setup; SIGTERM still ends it cleanly
    (before, capture had no reload: SIGHUP only logged that it could not)."""
    import httpx

    config = tmp_path / "hw.yaml"
    port = free_port()

    def write(cameras: str) -> None:
        config.write_text(f"cameras:\n{cameras}broker:\n  url: {nats_server.url}\n")

    write(f"  - {{name: crash, url: '{red_clip}', loop: true}}\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "hazardwatch", "capture", "--config", str(config),
         "--api-port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def reading(camera: str) -> bool:
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return False
        return any(
            line.startswith(f'hazardwatch_frames_read_total{{camera="{camera}"}}')
            and float(line.split()[-1]) > 0
            for line in text.splitlines()
        )

    try:
        assert wait_for(lambda: reading("crash"), 60)
        write(
            f"  - {{name: crash, url: '{red_clip}', loop: true}}\n"
            f"  - {{name: yard, url: '{red_clip}', loop: true}}\n"
        )
        process.send_signal(signal.SIGHUP)
        assert wait_for(lambda: reading("yard"), 30)
        config.write_text("cameras: [{name: oops\n")  # not YAML
        process.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert process.poll() is None and reading("crash") and reading("yard")
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "configuration reloaded: 2 camera(s) running; removed none, (re)started ['yard']" in err
    assert "configuration not reloaded, the running one stays" in err
    assert "RoleSummary(role='capture', cameras=2" in out


def test_the_events_service_shows_the_cameras_and_workers_other_nodes_report(
    tmp_path: Path, red_clip: Path, nats_server: NatsServer
) -> None:
    """/api/v1/cameras, /readyz and the metrics of `hazardwatch events` come from the status
    the capture node and the worker publish; a worker that stops makes it not ready."""
    import httpx

    broker = {"url": nats_server.url}
    settings, database_url = settings_for(tmp_path, "status", red_clip, broker=broker)
    looped = settings.model_copy(
        update={"cameras": [c.model_copy(update={"loop": True}) for c in settings.cameras]}
    )
    events = EventsNode(settings)
    worker_port, capture_port = free_port(), free_port()
    worker = WorkerNode(settings, encoder_factory=lambda s: FakeEncoder(), api_port=worker_port)
    capture = CaptureNode(looped, api_port=capture_port)
    threads = [threading.Thread(target=n.run, daemon=True) for n in (events, worker, capture)]
    for thread in threads:
        thread.start()
    api = f"http://127.0.0.1:{settings.api.port}"

    def get(path: str) -> httpx.Response:
        try:
            return httpx.get(api + path, timeout=5)
        except httpx.HTTPError:
            return httpx.Response(599)

    try:
        assert wait_for(lambda: get("/readyz").status_code == 200, 60), get("/readyz").text

        def cameras() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = get("/api/v1/cameras").json()["items"]
            return items

        # A camera is "streaming" from the moment it opens; its first frame counts are in the
        # next status the capture node publishes (every 2 s).
        assert wait_for(lambda: cameras()[0]["frames_read"] > 0, 15), cameras()
        assert [(c["name"], c["state"]) for c in cameras()] == [("crash", "streaming")]
        assert cameras()[0]["node"]
        # Which events instance decides its events: this one, holding the one partition.
        owner = cameras()[0]["owner"]
        assert owner["partition"] == 0 and owner["events_node"].endswith(f"-{os.getpid()}")
        assert 'hazardwatch_scores_owner{partition="0"} 1.0' in get("/metrics").text
        # The camera tile's picture: the capture node's latest frame, through the broker.
        tile = get("/api/v1/cameras/crash/latest.jpg")
        assert tile.status_code == 200 and tile.content[:3] == b"\xff\xd8\xff", tile.text
        assert get("/api/v1/cameras/nowhere/latest.jpg").status_code == 404

        # Search in words: the events service has no model, a worker embeds the words.
        def found() -> list[dict[str, Any]]:
            got = get("/api/v1/search?q=a+car+crash&limit=5")
            return list(got.json()["items"]) if got.status_code == 200 else []

        assert wait_for(lambda: bool(found()), 30), get("/api/v1/search?q=a+car+crash").text
        assert found()[0]["camera"] == "crash"
        assert get(found()[0]["thumbnail_url"]).content[:3] == b"\xff\xd8\xff"
        metrics = get("/metrics").text
        assert 'hazardwatch_camera_up{camera="crash"} 1.0' in metrics
        assert 'hazardwatch_nodes{role="worker"} 1.0' in metrics
        # Issue 29.8: each role exports what it does, and says which role it is.
        assert get("/healthz").json() == {"status": "ok", "role": "events"}
        assert wait_for(lambda: "hazardwatch_frames_handled_total{camera=\"crash\"}" in
                        get("/metrics").text, 15)  # fmt: skip
        assert "hazardwatch_inference_seconds" not in metrics
        roles = {}
        for role, port in (("capture", capture_port), ("worker", worker_port)):
            roles[role] = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert "hazardwatch_frames_published_total" in roles["capture"]
        assert "hazardwatch_frames_publish_failed_total 0.0" in roles["capture"]
        for meaningless in ("spool_capacity", "queue_capacity", "inference_seconds_count",
                            "events_total", "open_events"):  # fmt: skip
            assert f"hazardwatch_{meaningless}" not in roles["capture"], meaningless
        assert "hazardwatch_inference_seconds_count" in roles["worker"]
        for meaningless in ("spool_capacity", "queue_capacity", "events_total", "open_events"):
            assert f"hazardwatch_{meaningless}" not in roles["worker"], meaningless
        # The events service learns each camera's kind from the status its node reports.
        kinds = Repository(create_engine(database_url)).list_cameras
        assert wait_for(lambda: [c["source_kind"] for c in kinds()] == ["file"], 15), kinds()
        worker.stop()
        threads[1].join(30)
        assert wait_for(lambda: get("/readyz").status_code == 503, 15)
        assert any("no scoring worker" in r for r in get("/readyz").json()["reasons"])
        words = get("/api/v1/search?q=a+car+crash")
        assert words.status_code == 503 and "no worker answered" in words.text, words.text
    finally:
        capture.stop()
        worker.stop()
        events.stop()
        for thread in threads:
            thread.join(60)


def test_the_capture_and_worker_roles_keep_opencv_to_one_thread(
    tmp_path: Path, red_clip: Path, nats_server: NatsServer
) -> None:
    """As `hazardwatch run` does: cameras are the parallelism, and OpenCV's own pool of a
    thread per core spins between frames (it cost the capture node more CPU than the whole
    single process in bench/scale_out.py)."""
    import cv2

    settings, _ = settings_for(tmp_path, "threads", red_clip, broker={"url": nats_server.url})
    cv2.setNumThreads(4)
    CaptureNode(settings, api_port=0).run()
    assert cv2.getNumThreads() == 1
    cv2.setNumThreads(4)
    worker = WorkerNode(settings, encoder_factory=lambda s: FakeEncoder(), api_port=0)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: worker.worker is not None, 30)
        assert cv2.getNumThreads() == 1
    finally:
        worker.stop()
        thread.join(30)


def test_a_capture_node_reports_its_invalid_cameras_too() -> None:
    """The events role's /api/v1/cameras and /readyz show a camera whose source does not
    parse on its capture node, as one process shows its own (it was left out)."""
    from hazardwatch.capture.fleet import NoCameras
    from hazardwatch.records import CameraStatus
    from hazardwatch.roles import _capture_status

    class Link:
        connected = True

    fleet = NoCameras(invalid={"door": "rtsp://user:pw@door/: no host"})
    entries = _capture_status("a-1", Link(), fleet)  # type: ignore[arg-type]
    door = CameraStatus.from_json(entries["camera.door"])
    assert (door.state, door.node) == ("invalid", "a-1")
    assert door.last_error is not None and "pw" not in door.last_error
    assert door.problem() == (
        "camera door: invalid source, not running (see /api/v1/cameras) (capture node a-1)"
    )
    assert entries["node.capture.a-1"]["cameras"] == ["door"]


def test_a_class_added_through_the_events_api_reaches_the_workers_without_a_restart(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    """Issue 26.5, distributed: the events service stores the new bank version and puts it
    in the broker bucket, the worker scores with it, the events service reads each score
    with the version it carries, and the new class raises its event."""
    import httpx

    from tests.fakes import write_red_square_clip

    clip = tmp_path / "late.mp4"
    write_red_square_clip(str(clip), seconds=8.0, on=(3.0, 7.0))
    settings, _ = settings_for(tmp_path, "classes", clip, broker={"url": nats_server.url})
    events = EventsNode(settings)
    worker = WorkerNode(settings, encoder_factory=lambda s: FakeEncoder(), api_port=0)
    threads = [threading.Thread(target=n.run, daemon=True) for n in (events, worker)]
    for thread in threads:
        thread.start()
    api = f"http://127.0.0.1:{settings.api.port}"
    try:
        assert wait_for(lambda: worker.worker is not None, 30)

        def post() -> httpx.Response | None:
            try:
                return httpx.post(
                    api + "/api/v1/classes",
                    json={"name": "overturned_truck", "prompts": ["an overturned truck"]},
                    timeout=10,
                )
            except httpx.HTTPError:
                return None

        assert wait_for(lambda: (got := post()) is not None and got.status_code == 201, 30)
        version = httpx.get(api + "/api/v1/classes").json()["version"]
        assert wait_for(
            lambda: worker.worker is not None and worker.worker.bank.version == version, 15
        )
        assert "overturned_truck" in worker.worker.bank.class_names  # type: ignore[union-attr]
        CaptureNode(settings, api_port=0).run()  # the clip, to its end

        def its_events() -> list[dict[str, Any]]:
            got = httpx.get(api + "/api/v1/events", params={"class": "overturned_truck"})
            return list(got.json()["items"])

        assert wait_for(lambda: bool(its_events()), 30, interval=0.5)
        assert its_events()[0]["prompt_bank_version"] == version
    finally:
        worker.stop()
        events.stop()
        for thread in threads:
            thread.join(60)


def test_a_class_made_from_an_uploaded_image_is_learned_and_fires_in_the_roles(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    """Issue 26.4, distributed: the events service has no model, so a worker embeds the
    upload over the broker; the class goes to the workers like any bank version; the
    camera (never calibrated) learns it on its first seconds and it fires on the sight.
    The clip plays at its own pace, as a camera would: read as fast as it decodes, all of
    it reaches the detector before the camera's calibration (on a thread of its own) is
    done, and the sight comes while the camera still learns."""
    import cv2
    import httpx

    from tests.fakes import write_red_square_clip

    clip = tmp_path / "late.mp4"
    write_red_square_clip(str(clip), seconds=10.0, on=(5.0, 9.0), busy=True)  # all in motion
    settings, _ = settings_for(
        tmp_path, "examples", clip, loop=True, broker={"url": nats_server.url},
        detector={"learning_s": 2.0},
    )  # fmt: skip
    events = EventsNode(settings)
    worker = WorkerNode(settings, encoder_factory=lambda s: FakeEncoder(), api_port=0)
    capture = CaptureNode(settings, api_port=0)  # started once the class is made
    threads = [threading.Thread(target=n.run, daemon=True) for n in (events, worker)]
    for thread in threads:
        thread.start()
    api = f"http://127.0.0.1:{settings.api.port}"
    picture = np.full((240, 320, 3), 160, np.uint8)
    picture[80:180, 120:220] = (20, 20, 230)
    jpeg = cv2.imencode(".jpg", picture)[1].tobytes()
    try:

        def post() -> httpx.Response | None:
            try:
                return httpx.post(
                    api + "/api/v1/classes/red_square/examples",
                    files={"file": ("sight.jpg", jpeg, "image/jpeg")},
                    timeout=10,
                )
            except httpx.HTTPError:
                return None

        made = post()
        deadline = time.monotonic() + 30
        while (made is None or made.status_code != 200) and time.monotonic() < deadline:
            time.sleep(0.5)  # the API, then a worker to embed the upload, come up
            made = post()
        assert made is not None and made.status_code == 200, made and made.text
        assert made.json()["class"]["model"] == settings.scoring.model  # as events name it
        assert made.json()["class"]["examples"][0]["source"].startswith("upload:")
        version = made.json()["version"]
        assert wait_for(
            lambda: worker.worker is not None and worker.worker.bank.version == version, 15
        )
        threads.append(threading.Thread(target=capture.run, daemon=True))  # in real time
        threads[-1].start()

        def its_events() -> list[dict[str, Any]]:
            got = httpx.get(api + "/api/v1/events", params={"class": "red_square"})
            return list(got.json()["items"])

        assert wait_for(lambda: bool(its_events()), 30, interval=0.5)
        fired = its_events()
        assert len(fired) == 1 and fired[0]["prompt_bank_version"] == version
        normal = httpx.get(api + "/api/v1/cameras/late/normal").json()
        assert normal["classes"]["red_square"]["rule"] == "evidence"
    finally:
        capture.stop()
        worker.stop()
        events.stop()
        for thread in threads:
            thread.join(60)


@pytest.mark.timeout(240)
def test_the_brokers_consumer_count_stays_constant_over_a_minute_of_running(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    """Issue 27.4: one events service, two workers and a capture node on a looping clip;
    the server's consumers (every stream's) are counted every 5 s for a minute and never
    change. (The status board made one per poll: a consumer every 2 s.)"""
    from hazardwatch.handoff.link import BrokerLink
    from tests.fakes import write_red_square_clip

    clip = tmp_path / "loop.mp4"
    write_red_square_clip(str(clip), seconds=10.0, on=(4.0, 7.0), busy=True)
    url = f"sqlite:///{tmp_path / 'consumers'}.db"
    settings = service_settings(
        tmp_path / "consumers", url, [str(clip)], loop=True, broker={"url": nats_server.url}
    )
    events = EventsNode(settings)
    workers = [WorkerNode(settings, encoder_factory=lambda s: FakeEncoder(), api_port=0)
               for _ in range(2)]  # fmt: skip
    capture = CaptureNode(settings, api_port=0)
    nodes: list[Any] = [events, *workers, capture]
    threads = [threading.Thread(target=n.run, daemon=True) for n in nodes]
    for thread in threads:
        thread.start()
    link = BrokerLink(nats_server.url, "counter")
    link.start()

    async def consumers() -> dict[str, int]:
        assert link.js is not None
        return {i.config.name or "": i.state.consumer_count for i in await link.js.streams_info()}

    try:
        api = f"http://127.0.0.1:{settings.api.port}"

        def all_running() -> bool:
            import httpx

            try:
                cams = httpx.get(api + "/api/v1/cameras", timeout=2).json()["items"]
                scored = httpx.get(api + "/api/v1/events", timeout=2).json()["items"]
            except (httpx.HTTPError, ValueError, KeyError):
                return False
            return bool(cams) and cams[0]["state"] == "streaming" and bool(scored)

        assert wait_for(all_running, 60, interval=0.5)
        time.sleep(WARM_S)  # a finished consumer from the start-up may still linger
        counts = []
        for _ in range(13):
            counts.append(link.call(consumers(), timeout=5))
            time.sleep(5.0)
        assert all(c == counts[0] for c in counts), counts
        assert sum(counts[0].values()) <= 6, counts[0]  # frames, scores, one watch, …
    finally:
        link.stop()
        for node in nodes:
            node.stop()
        for thread in threads:
            thread.join(60)


WARM_S = 8.0
