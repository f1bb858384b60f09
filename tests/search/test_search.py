"""Search end to end (issue 26): a real clip through the running service, keyframes kept
and indexed, searched in words, by example (keyframe, event, upload), restarted, and
pruned by retention.

The fake encoder (tests/fakes.py) is the only fake: a red patch is its "crash". The
patch is painted into real footage (../shared car-detection.mp4) for a few seconds, so
the query "a car crash" must find those moments among ordinary traffic.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from hazardwatch.app import Service
from hazardwatch.outputs.retention import MediaJanitor
from hazardwatch.records import KeyframeRecord
from hazardwatch.search.service import KeyframeSearch
from hazardwatch.storage import migrate
from hazardwatch.storage.engine import create_engine
from hazardwatch.storage.repository import Repository
from tests.conftest import service_settings
from tests.fakes import FakeEncoder
from tests.helpers import wait_for

RED_FROM_S, RED_TO_S = 8.0, 11.0  # where the clip shows the sight
CLIP_S = 16.0


def red_share(jpeg: bytes) -> float:
    """Share of the image's pixels that are the fake encoder's red."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    b, g, r = (image[..., i].astype(int) for i in range(3))
    return float(((r > 150) & (g < 80) & (b < 80)).mean())


def painted_clip(shared_dir: Path, path: Path, seconds: float, red: tuple[float, float]) -> Path:
    """The first `seconds` of real traffic footage, with a red patch over `red` (s)."""
    source = cv2.VideoCapture(str(shared_dir / "data" / "videos" / "car-detection.mp4"))
    fps = source.get(cv2.CAP_PROP_FPS)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (768, 432))
    for i in range(int(seconds * fps)):
        ok, frame = source.read()
        assert ok, "car-detection.mp4 is shorter than expected"
        if red[0] <= i / fps < red[1]:
            frame[150:300, 300:500] = (0, 0, 230)
        writer.write(frame)
    writer.release()
    source.release()
    return path


@pytest.fixture(scope="module")
def sight_clip(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 16 s of real traffic footage, with a red patch from 8 s to 11 s."""
    path = tmp_path_factory.mktemp("clips") / "sight.mp4"
    return painted_clip(shared_dir, path, CLIP_S, (RED_FROM_S, RED_TO_S))


@dataclass
class Running:
    base: str
    service: Service
    media: Path
    url: str


@pytest.fixture
def running(tmp_path: Path, database_url: str, sight_clip: Path) -> Iterator[Running]:
    """The service over the clip, looping, with a keyframe every second while in motion;
    once the first pass is indexed."""
    settings = service_settings(
        tmp_path, database_url, [str(sight_clip)], loop=True, search={"keyframe_interval_s": 1.0}
    )
    service = Service(settings, encoder_factory=lambda s: FakeEncoder())
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{settings.api.port}"
    try:

        def a_pass_indexed() -> bool:
            try:
                got = httpx.get(base + "/api/v1/search", params={"q": "a car crash"})
            except httpx.TransportError:
                return False
            return got.status_code == 200 and got.json()["searched"] >= CLIP_S

        assert wait_for(a_pass_indexed, 60, interval=0.5)
        yield Running(base, service, tmp_path / "media", database_url)
    finally:
        service.stop()
        thread.join(60)
    assert not thread.is_alive()


@pytest.mark.timeout(240)
def test_words_and_examples_find_the_moments_of_the_sight(running: Running) -> None:
    base = running.base
    got = httpx.get(base + "/api/v1/search", params={"q": "a car crash", "limit": 5}).json()
    assert got["model"] == "fake-crash-detector" and got["items"]
    top = got["items"][0]
    assert top["camera"] == "sight"
    thumb = httpx.get(base + top["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert red_share(thumb.content) > 0.02, "the best match for the words shows the sight"
    # Comparable scores: the sight stands out of ordinary traffic by many deviations, and
    # ordinary frames rank low.
    assert top["score"] > 3
    assert top["similarity"] > 0.5
    everything = httpx.get(base + "/api/v1/search", params={"q": "a car crash", "limit": 200})
    items = everything.json()["items"]
    sight = [i for i in items if red_share(httpx.get(base + i["thumbnail_url"]).content) > 0.02]
    assert 2 <= len(sight) < len(items)
    assert items[: len(sight)] == sight, "every moment of the sight ranks above every other"

    # Find similar from that keyframe: its neighbours are the other moments of the sight,
    # and the example itself is left out.
    similar = httpx.post(
        base + "/api/v1/search/similar", params={"keyframe": top["keyframe"], "limit": 3}
    ).json()["items"]
    assert similar and top["keyframe"] not in [i["keyframe"] for i in similar]
    assert all(i["keyframe"] in [s["keyframe"] for s in sight] for i in similar[:1])

    # From an uploaded image of the sight.
    upload = httpx.post(
        base + "/api/v1/search/similar",
        params={"limit": 1},
        files={"file": ("sight.jpg", thumb.content, "image/jpeg")},
    ).json()["items"]
    assert upload[0]["keyframe"] in [s["keyframe"] for s in sight]

    # The camera and time filters narrow the search.
    none = httpx.get(
        base + "/api/v1/search", params={"q": "a car crash", "camera": "elsewhere"}
    ).json()
    assert none["items"] == []
    later = httpx.get(
        base + "/api/v1/search",
        params={"q": "a car crash", "since": "2100-01-01T00:00:00Z"},
    ).json()
    assert later["items"] == []
    metrics = httpx.get(base + "/metrics").text
    assert 'hazardwatch_keyframes{camera="sight"}' in metrics
    assert 'hazardwatch_search_seconds_count{kind="text"}' in metrics


@pytest.mark.timeout(240)
def test_an_events_peak_is_kept_and_finds_the_rest_of_the_sight(running: Running) -> None:
    base = running.base
    events: list[dict[str, Any]] = []

    def an_event_ended() -> bool:
        events[:] = httpx.get(base + "/api/v1/events", params={"status": "closed"}).json()["items"]
        return bool(events)

    assert wait_for(an_event_ended, 90, interval=0.5)
    uuid = events[0]["uuid"]

    def its_peak_indexed() -> list[dict[str, Any]]:
        items = httpx.get(
            base + "/api/v1/search", params={"q": "a car crash", "limit": 200}
        ).json()["items"]
        return [i for i in items if i["event"] is not None and i["event"]["uuid"] == uuid]

    assert wait_for(lambda: bool(its_peak_indexed()), 30, interval=0.5)
    peak = its_peak_indexed()[0]
    assert peak["event"]["class_name"] == "traffic_accident"
    similar = httpx.post(
        base + "/api/v1/search/similar", params={"event": uuid, "limit": 5}
    ).json()["items"]
    assert similar and all((i["event"] or {}).get("uuid") != uuid for i in similar)
    assert red_share(httpx.get(base + similar[0]["thumbnail_url"]).content) > 0.02


def test_malformed_searches_get_4xx_with_reasons(running: Running) -> None:
    base = running.base
    cases = [
        ("GET", "/api/v1/search", {"q": "   "}, None, 422, "blank"),
        ("GET", "/api/v1/search", {"q": "x" * 301}, None, 422, "at most 300"),
        ("GET", "/api/v1/search", {"q": "car", "limit": 0}, None, 422, "limit"),
        ("POST", "/api/v1/search/similar", {}, None, 422, "exactly one"),
        ("POST", "/api/v1/search/similar", {"event": "0" * 32, "keyframe": 1}, None, 422,
         "event, keyframe"),
        ("POST", "/api/v1/search/similar", {"event": "0" * 32}, None, 404, "no event"),
        ("POST", "/api/v1/search/similar", {"keyframe": 2**40}, None, 404, "no keyframe"),
        ("POST", "/api/v1/search/similar", {}, {"file": ("a.txt", b"hello", "text/plain")},
         415, "not a recognised image"),
        ("GET", f"/api/v1/keyframes/{2**40}/thumbnail.jpg", {}, None, 404, "no keyframe"),
    ]  # fmt: skip
    for method, path, params, files, status, reason in cases:
        got = httpx.request(method, base + path, params=params, files=files)
        assert got.status_code == status, (path, params, got.text)
        assert reason in got.text, (path, params, got.text)


@pytest.mark.timeout(240)
def test_the_index_is_rebuilt_from_the_stored_keyframes_and_retention_prunes_both(
    tmp_path: Path, database_url: str, sight_clip: Path
) -> None:
    settings = service_settings(
        tmp_path, database_url, [str(sight_clip)], search={"keyframe_interval_s": 1.0}
    )
    Service(settings, encoder_factory=lambda s: FakeEncoder()).run()  # to the clip's end
    engine = create_engine(database_url)
    migrate.upgrade(engine)
    repository = Repository(engine)
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT COUNT(*) FROM keyframes")).scalar_one()
        paths = [r[0] for r in conn.execute(sa.text("SELECT thumbnail_path FROM keyframes"))]
    assert stored >= CLIP_S / 2
    media = tmp_path / "media"
    assert all((media / p).is_file() for p in paths)

    # A restart: the index is built again from the rows (thumbnails and all).
    search = KeyframeSearch(repository.keyframes, "fake-crash-detector")
    search.start()
    assert wait_for(lambda: not search.loading, 30)
    assert search.index is not None and len(search.index) == stored
    crash = FakeEncoder().encode_text(["a car crash"])[0]
    best = search.search(crash, 1)[0]
    assert red_share((media / best.keyframe.thumbnail_path).read_bytes()) > 0.02
    # Another model's keyframes are not searched (reindex makes them searchable).
    other = KeyframeSearch(repository.keyframes, "another-model")
    other.start()
    assert wait_for(lambda: not other.loading, 30)
    assert other.index is None

    # Retention: the older half of the thumbnails age out; their rows and vectors go too.
    old = sorted(paths)[: len(paths) // 2]
    past = time.time() - 30 * 86_400
    for path in old:
        os.utime(media / path, (past, past))
    janitor = MediaJanitor(media, 14, 0, on_deleted=search.forget)
    janitor.run_once()
    assert not any((media / p).exists() for p in old)
    with engine.connect() as conn:
        left = conn.execute(sa.text("SELECT COUNT(*) FROM keyframes")).scalar_one()
    assert left == stored - len(old) == len(search.index)
    assert search.sizes()["sight"][0] == left
    kept = {m.keyframe.thumbnail_path for m in search.search(crash, 200)}
    assert kept == set(paths) - set(old)
    search.stop()
    other.stop()
    engine.dispose()


@pytest.mark.timeout(240)
def test_a_saved_index_is_read_back_checked_against_the_rows_and_rebuilt_when_it_must(
    tmp_path: Path, database_url: str, sight_clip: Path
) -> None:
    settings = service_settings(
        tmp_path, database_url, [str(sight_clip)], search={"keyframe_interval_s": 1.0}
    )
    Service(settings, encoder_factory=lambda s: FakeEncoder()).run()  # saves at its stop
    saved = tmp_path / "data" / "search"
    assert (saved / "manifest.json").is_file()
    engine = create_engine(database_url)
    table = Repository(engine).keyframes
    stored = table.count()
    crash = FakeEncoder().encode_text(["a car crash"])[0]

    def started(model: str = "fake-crash-detector") -> KeyframeSearch:
        search = KeyframeSearch(table, model, directory=saved)
        search.start()
        assert wait_for(lambda: not search.loading, 30)
        return search

    again = started()
    assert again.restored and again.index is not None and len(again.index) == stored
    best = again.search(crash, 1)[0]
    # While stopped: retention deletes a keyframe, and one more is stored.
    gone = table.delete_paths([best.keyframe.thumbnail_path])
    new = KeyframeRecord("sight", best.keyframe.ts + timedelta(days=1), crash.astype(np.float16)
                         .tobytes(), "sight/new.jpg", 9, "fake-crash-detector")  # fmt: skip
    (added,) = table.add([new])
    again.stop()  # saves again (without the change above: that happened "while stopped")
    table.delete_paths([])  # nothing
    third = started()
    assert third.restored and third.index is not None
    held = set(third.index.ids().tolist())
    assert gone.ids[0] not in held and added in held and len(held) == stored
    assert third.sizes()["sight"][0] == stored
    third.stop()
    # Another model's files, or none: rebuilt from the rows.
    other = started("another-model")
    assert not other.restored and other.index is None
    other.stop()
    shutil.rmtree(saved)
    rebuilt = started()
    assert not rebuilt.restored and rebuilt.index is not None and len(rebuilt.index) == stored
    rebuilt.stop()
    engine.dispose()


def test_keyframes_another_instance_stored_are_searched_after_a_catch_up(
    database_url: str,
) -> None:
    """Issue 27: with the cameras partitioned, each events instance's writer feeds its own
    index with its own cameras' keyframes; those the other instances store reach it by a
    catch-up over the rows (every 10 s in the events role), so any instance's API
    searches every camera, and nothing is held twice."""
    from datetime import UTC, datetime

    engine = create_engine(database_url)
    migrate.upgrade(engine)
    table = Repository(engine).keyframes
    t0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)

    def keyframes(camera: str, count: int, axis: int) -> list[KeyframeRecord]:
        vector = np.eye(8, dtype=np.float16)[axis].tobytes()
        return [KeyframeRecord(camera, t0 + timedelta(seconds=i), vector,
                               f"{camera}/{i}.jpg", 100, "m") for i in range(count)]  # fmt: skip

    table.add(keyframes("north", 3, 0))  # this instance's camera, stored before its start
    search = KeyframeSearch(table, "m")
    search.start()
    try:
        assert wait_for(lambda: not search.loading, 30)
        assert search.index is not None and len(search.index) == 3
        table.add(keyframes("south", 2, 1))  # another instance's camera, stored since
        assert len(search.index) == 3 and "south" not in search.sizes()
        assert search.catch_up() >= 2
        assert len(search.index) == 5 and search.sizes()["south"][0] == 2
        best = search.search(np.eye(8, dtype=np.float32)[1], 1)[0]
        assert best.keyframe.camera == "south"
        search.catch_up()  # read again (the margin): still held once
        assert len(search.index) == 5 and search.sizes()["south"][0] == 2
    finally:
        search.stop()
        engine.dispose()
