"""Hazards by example end to end (issue 26.4): a class made from a stored event's peak and a
keyframe through the API, learned by the camera on its normal footage, fires where the
sight returns and stays quiet on the rest; a confirmed verdict adds the next peak.

Real traffic footage (../shared car-detection.mp4) with a red patch painted in: the fake
encoder (tests/fakes.py, the only fake) sees red as its own direction, so the patch is a
sight no prompt of the class names, only its examples.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from hazardwatch.app import Service
from hazardwatch.search.prior import MIN_KEYFRAMES
from tests.conftest import service_settings
from tests.fakes import FakeEncoder
from tests.helpers import wait_for
from tests.search.test_search import painted_clip, red_share

SIGHT_S = (20.0, 24.0)  # the second clip: 20 s of the camera's normal footage, then the sight
CLIP_S = 26.0


@contextmanager
def serving(tmp_path: Path, url: str, source: Path, **extra: Any) -> Iterator[str]:
    settings = service_settings(tmp_path, url, [str(source)], loop=True, **extra)
    service = Service(settings, encoder_factory=lambda s: FakeEncoder())
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{settings.api.port}"
    try:
        assert wait_for(lambda: _up(base), 30, interval=0.2)
        yield base
    finally:
        service.stop()
        thread.join(60)
    assert not thread.is_alive()


def _up(base: str) -> bool:
    try:
        return httpx.get(base + "/readyz").status_code == 200
    except httpx.TransportError:
        return False


def events_of(base: str, class_name: str) -> list[dict[str, Any]]:
    got = httpx.get(base + "/api/v1/events", params={"class": class_name, "limit": 100})
    return list(got.json()["items"])


@pytest.mark.mysql
@pytest.mark.timeout(300)
def test_a_class_made_from_examples_fires_where_the_sight_returns_and_nowhere_else(
    shared_dir: Path, tmp_path: Path, mysql_url: str
) -> None:
    """On MariaDB (the SQL of the prior's keyframes runs on both in tests/search/test_prior.py)."""
    database_url = mysql_url
    # 1. Footage where the sight was seen: a traffic_accident event (the fake's red is
    #    also its crash) and keyframes of it.
    first = painted_clip(shared_dir, tmp_path / "one" / "yard.mp4", 16.0, (8.0, 11.0))
    with serving(tmp_path, database_url, first, search={"keyframe_interval_s": 1.0}) as base:

        def closed_and_enough_keyframes() -> bool:
            got = httpx.get(base + "/api/v1/search", params={"q": "a car crash"}).json()
            return got["searched"] >= MIN_KEYFRAMES + 5 and any(
                e["status"] == "closed" for e in events_of(base, "traffic_accident")
            )

        assert wait_for(closed_and_enough_keyframes, 120, interval=0.5)
        event = events_of(base, "traffic_accident")[-1]
        found = httpx.post(
            base + "/api/v1/search/similar", params={"event": event["uuid"], "limit": 3}
        ).json()["items"]
        keyframe = found[0]["keyframe"]
        assert red_share(httpx.get(base + found[0]["thumbnail_url"]).content) > 0.02
        made = httpx.post(
            base + "/api/v1/classes",
            json={"name": "red_sight", "severity": "critical", "description": "the red crate",
                  "examples": [{"event": event["uuid"]}]},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        added = httpx.post(
            base + "/api/v1/classes/red_sight/examples", params={"keyframe": keyframe}
        )
        assert added.status_code == 200, added.text
        sight = added.json()["class"]
        assert [e["source"] for e in sight["examples"]] == [
            f"event:{event['uuid']}",
            f"keyframe:{keyframe}",
        ]
        assert sight["model"] == FakeEncoder.name
        # Its prior from the camera's stored keyframes (the sight's own among them: a
        # prior errs towards silence).
        assert sight["normal"]["burst"] >= 5.0
        bad = httpx.post(
            base + "/api/v1/classes",
            json={"name": "nothing", "examples": [{"event": "0" * 8}]},
        )
        assert bad.status_code == 404 and "no event" in bad.text

    # 2. The same camera later: 20 s of its normal footage (learned: 8 s), then the sight.
    second = painted_clip(shared_dir, tmp_path / "two" / "yard.mp4", CLIP_S, SIGHT_S)
    with serving(tmp_path, database_url, second, detector={"learning_s": 8.0}) as base:

        def learned() -> bool:
            cams = httpx.get(base + "/api/v1/cameras").json()["items"]
            return bool(cams) and cams[0]["calibration"]["calibrated"]

        assert wait_for(learned, 60, interval=0.5)
        normal = httpx.get(base + "/api/v1/cameras/yard/normal").json()
        assert normal["classes"]["red_sight"]["rule"] == "evidence"
        assert normal["classes"]["red_sight"]["threshold"] > 0
        assert wait_for(lambda: bool(events_of(base, "red_sight")), 90, interval=0.5)
        fired = events_of(base, "red_sight")
        for e in fired:  # every one shows the sight: none on the normal footage
            assert e["severity"] == "critical"
            snapshot = httpx.get(base + e["snapshot_url"])
            assert red_share(snapshot.content) > 0.02, e
        assert len(fired) <= 2  # one per return of the sight, not a flicker of them

        # 3. An operator confirms one and adds its peak: the camera learns the class again.
        uuid = fired[0]["uuid"]
        verdict = httpx.post(
            base + f"/api/v1/events/{uuid}/feedback",
            json={"verdict": "confirmed", "add_example": True},
        )
        assert verdict.status_code == 200, verdict.text
        assert verdict.json()["example"]["source"] == f"event:{uuid}"
        classes = httpx.get(base + "/api/v1/classes").json()["classes"]
        held = next(c for c in classes if c["name"] == "red_sight")["examples"]
        assert len(held) == 3

        def relearning() -> bool:
            cams = httpx.get(base + "/api/v1/cameras").json()["items"]
            learning = cams[0]["calibration"]["learning"]
            return learning is not None and learning["classes"] == ["red_sight"]

        assert wait_for(relearning, 30, interval=0.5)
        wrong = httpx.post(
            base + f"/api/v1/events/{uuid}/feedback",
            json={"verdict": "false_alarm", "add_example": True},
        )
        assert wrong.status_code == 422 and "only a confirmed event" in wrong.text
