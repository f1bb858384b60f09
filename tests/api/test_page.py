"""The review page in a real browser: Debian's chromium, driven by Playwright (no browser
download), against the API on a real server with real media. An operator logs in, filters,
opens an event whose clip plays, marks it a false alarm with a key (stored under her
name; the camera learns the sight) and logs out; a viewer sees but cannot judge.

A failing test leaves a screenshot and the page's console log in its temporary
directory and prints their paths."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from hazardwatch.api.accounts import hash_password
from hazardwatch.api.app import ApiState, create_app
from hazardwatch.detect.normal import encode_embedding
from hazardwatch.images import ImageOptions, encode_jpeg
from hazardwatch.records import CameraState, CameraStatus, ScoreSample
from hazardwatch.settings import ApiSettings
from tests.api.conftest import T0, UUIDS, event
from tests.conftest import skip_or_fail
from tests.helpers import serve_app, wait_for

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
USERS = [
    {"name": "alice", "role": "operator", "password_hash": hash_password("alice pass", n=2**10)},
    {"name": "vera", "role": "viewer", "password_hash": hash_password("vera pass", n=2**10)},
    {"name": "ada", "role": "admin", "password_hash": hash_password("ada pass", n=2**10)},
]


class Tiles:
    """Two cameras as the readers would report them."""

    def cameras(self) -> list[CameraStatus]:
        return [
            CameraStatus("south", "rtsp", CameraState.STREAMING, 10.0, 0.1, 500),
            CameraStatus("north", "rtsp", CameraState.BACKING_OFF, 0.0, 30.0, 90, 3, "refused"),
        ]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if CHROMIUM is None:
        skip_or_fail("no chromium: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("playwright is a dev dependency (pip install -e '.[dev]')")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def write_media(media: Path) -> tuple[str, str]:
    """A real snapshot and a real H.264 clip (what the recorder stores) of camera south."""
    (media / "south").mkdir(parents=True, exist_ok=True)
    frame = np.full((180, 320, 3), (40, 90, 200), np.uint8)
    cv2.rectangle(frame, (120, 60), (200, 120), (0, 0, 255), -1)
    cv2.imwrite(str(media / "south" / "peak.jpg"), frame)
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         "testsrc=duration=4:size=320x180:rate=10", "-pix_fmt", "yuv420p", "-c:v", "libx264",
         "-movflags", "+faststart", str(media / "south" / "clip.mp4")],
        check=True, timeout=60,
    )  # fmt: skip
    return "south/peak.jpg", "south/clip.mp4"


@pytest.fixture
def served(state: ApiState) -> Iterator[tuple[str, ApiState, list[str]]]:
    snapshot, clip = write_media(state.media_dir)
    embedding = encode_embedding(np.eye(8, dtype=np.float32)[0])
    state.repository.upsert_event(
        event(
            4,
            snapshot_path=snapshot,
            clip_path=clip,
            peak_embedding=embedding,
            revision=3,
            opened_statistic=9.7,
            opened_threshold=8.2,
        )
    )
    for i in (0, 2):  # the API tests' media made to fail: here every image is real
        state.repository.upsert_event(event(i, snapshot_path=snapshot, revision=3))
    four = event(4)
    state.repository.add_scores(
        [
            ScoreSample("south", four.started_at + timedelta(seconds=t / 2), "fire_smoke",
                        0.9 if 0 <= t < 10 else 0.2, min(1.5, max(0.0, (t + 6) / 8)))
            for t in range(-60, 40)
        ]
    )  # fmt: skip
    state.status = Tiles()
    tile = encode_jpeg(np.full((90, 160, 3), 128, np.uint8), ImageOptions())
    state.latest_frame = lambda camera: tile if camera == "south" else None
    state.repository.upsert_event(event(3, status="open", ended_at=None, revision=3))
    learned: list[str] = []
    state.learn_normal = lambda camera, _embedding: learned.append(camera) or len(learned)
    settings = ApiSettings(users=USERS)  # type: ignore[arg-type]
    with serve_app(create_app(state, settings)) as base:
        yield base, state, learned


@pytest.fixture
def page(chromium: Any, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    page.console_log = console
    yield page
    failed = getattr(request.node, "failed_call", False)
    if failed:
        shot, log = tmp_path / "page.png", tmp_path / "console.log"
        page.screenshot(path=str(shot), full_page=True)
        log.write_text("\n".join(console))
        print(f"review page test failed: screenshot {shot}, console log {log}")
    context.close()


def log_in(page: Any, base: str, name: str, password: str) -> None:
    page.goto(base + "/")
    form = page.locator("#login")
    form.get_by_label("Name").fill(name)
    form.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_selector("#events tbody tr")


def until(page: Any, predicate: str, timeout_s: float = 5.0) -> bool:
    """Poll `predicate` in the page. (Playwright's wait_for_function evaluates a string in
    the page, which the page's content security policy rightly forbids.)"""
    return wait_for(lambda: bool(page.evaluate(predicate)), timeout_s, interval=0.1)


def errors(page: Any) -> list[str]:
    return [line for line in page.console_log if line.startswith(("error", "pageerror"))]


def test_an_operator_goes_through_events_watches_the_clip_and_marks_a_false_alarm(
    served: tuple[str, ApiState, list[str]], page: Any
) -> None:
    base, state, learned = served
    log_in(page, base, "alice", "alice pass")
    assert page.locator("#me").inner_text() == "alice (operator)"
    assert page.locator("#login").is_hidden()
    assert page.locator("#events tbody tr").count() == 5
    # Every image has a text alternative.
    assert page.locator("img:not([alt])").count() == 0
    # Filter by camera: kept in the URL, so a reload or a shared link shows the same.
    page.locator("#filters").get_by_label("Camera").fill("south")
    page.get_by_role("button", name="Filter").click()
    assert until(page, "() => document.querySelectorAll('#events tbody tr').length === 3")
    assert "camera=south" in page.url
    page.reload()  # the URL alone brings back the same filtered list
    page.wait_for_selector("#events tbody tr")
    assert page.locator("#events tbody tr").count() == 3
    assert page.locator("#filters").get_by_label("Camera").input_value() == "south"
    # The newest south event has the clip: open it with the keyboard and watch it play.
    page.locator("#events tbody tr").first.focus()
    page.keyboard.press("Enter")
    assert until(page, "() => document.getElementById('clip').currentTime > 0.2", 15)
    assert page.locator("#detail-title").inner_text().startswith("fire_smoke on south")
    # The statistic that opened it, its camera's scores around it, its neighbours.
    assert "statistic 9.70 against threshold 8.20" in page.locator("#facts").inner_text()
    page.wait_for_selector("#series:not([hidden]) polyline.progress")
    points = page.locator("#plot polyline.progress").get_attribute("points") or ""
    assert len(points.split()) == 100
    assert page.locator("#plot rect.span").count() == 1
    assert page.locator("#plot line.threshold").count() == 1
    assert until(page, "() => document.querySelectorAll('#neighbours li').length === 2")
    assert "traffic_accident" in page.locator("#neighbours li").first.inner_text()
    # Opened: reviewed, for alice (the row loses its unreviewed mark).
    assert wait_for(lambda: state.repository.reviewed_among([UUIDS[4]], "alice"), 5)
    assert page.locator("#events tbody tr.unreviewed").count() == 2
    page.keyboard.press("f")  # false alarm
    page.wait_for_selector("text=The camera learned this sight")
    stored = state.repository.get_event(UUIDS[4])
    assert stored is not None and stored.verdict == "false_alarm" and stored.verdict_by == "alice"
    assert learned == ["south"]  # the sight went to the camera's normal references
    assert "false alarm" in page.locator("#events tbody tr").first.inner_text()
    # j moves to the next event; c confirms it.
    page.keyboard.press("j")
    page.keyboard.press("c")
    page.wait_for_selector("text=Stored: confirmed.")
    confirmed = state.repository.get_event(UUIDS[2])
    assert confirmed is not None and confirmed.verdict == "confirmed"
    # A neighbour opens in place, and the URL links to it.
    page.locator("#neighbours a").last.click()
    assert until(page, f"() => location.search.includes('event={UUIDS[0]}')")  # a link to it
    assert page.locator("#detail-title").inner_text().startswith("traffic_accident on south")
    # Log out: the session ends, the login form is back.
    page.get_by_role("button", name="Log out").click()
    page.wait_for_selector("#login:not([hidden])")
    assert page.request.get(base + "/api/v1/events").status == 401
    assert errors(page) == []


def test_a_viewer_sees_but_has_no_verdict_buttons_and_the_api_refuses_her(
    served: tuple[str, ApiState, list[str]], page: Any
) -> None:
    base, state, _ = served
    log_in(page, base, "vera", "vera pass")
    page.locator("#events tbody tr").first.click()
    page.wait_for_selector("#detail:not([hidden])")
    assert page.locator("#judge").is_hidden()
    page.keyboard.press("f")  # the shortcut does nothing for a viewer
    status = page.evaluate(
        """async (uuid) => {
            const me = await (await fetch('/api/v1/session')).json();
            const answer = await fetch(`/api/v1/events/${uuid}/feedback`, {
                method: 'POST', headers: {'Content-Type': 'application/json',
                'X-CSRF-Token': me.csrf_token}, body: JSON.stringify({verdict: 'confirmed'})});
            return answer.status;
        }""",
        UUIDS[4],
    )
    assert status == 403
    stored = state.repository.get_event(UUIDS[4])
    assert stored is not None and stored.verdict is None
    # Nothing from another host; the page's policy allows only this origin.
    answer = page.request.get(base + "/")
    assert "default-src 'self'" in answer.headers["content-security-policy"]
    assert "://" not in answer.text().replace(base, "")
    assert [e for e in errors(page) if "403" not in e] == []  # (the refused POST above)


def test_a_wrong_password_says_so_and_the_page_stays_locked(
    served: tuple[str, ApiState, list[str]], page: Any
) -> None:
    base, _, _ = served
    page.goto(base + "/")
    page.locator("#login").get_by_label("Name").fill("alice")
    page.locator("#login").get_by_label("Password").fill("not it")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_selector("text=Wrong name or password.")
    assert page.locator("#review").is_hidden()
    assert [e for e in errors(page) if "401" not in e] == []  # the refused login itself


def test_pages_go_older_and_back_newer_through_deep_keyset_pages(
    served: tuple[str, ApiState, list[str]], page: Any
) -> None:
    base, state, _ = served
    for i in range(55):  # 60 events in all: pages of 25, 25 and 10
        at = T0 - timedelta(hours=1, minutes=i)
        state.repository.upsert_event(
            event(0, uuid=f"00000000-0000-4000-9000-{i:012d}", camera="east", started_at=at,
                  peak_at=at, ended_at=at + timedelta(seconds=3))
        )  # fmt: skip
    log_in(page, base, "alice", "alice pass")

    def starts() -> list[str]:
        return list(page.locator("#events tbody tr td:nth-child(5)").all_inner_texts())

    first = starts()
    assert len(first) == 25 and page.locator("#prev").is_disabled()
    page.get_by_role("button", name="Older").click()
    assert wait_for(lambda: len(starts()) == 25 and starts() != first, 5)
    assert "before=" in page.url
    second = starts()
    page.get_by_role("button", name="Older").click()
    assert wait_for(lambda: len(starts()) == 10, 5)
    third = starts()
    assert page.locator("#next").is_disabled()
    page.get_by_role("button", name="Newer").click()
    assert wait_for(lambda: starts() == second, 5) and "after=" in page.url
    page.get_by_role("button", name="Newer").click()  # back at the top: a full first page
    assert wait_for(lambda: starts() == first, 5)
    assert "after=" not in page.url and page.locator("#prev").is_disabled()
    # Every event once over the three pages (each starts in a minute of its own).
    assert len(set(first + second + third)) == len(first + second + third) == 60
    # A time range, kept in the URL as ISO times: the five events of T0's minutes.
    page.locator("#filters").get_by_label("From").fill(localized(page, T0 - timedelta(minutes=1)))
    page.get_by_role("button", name="Filter").click()
    assert until(page, "() => document.querySelectorAll('#events tbody tr').length === 5")
    assert "since=" in page.url
    page.reload()
    page.wait_for_selector("#events tbody tr")
    assert page.locator("#events tbody tr").count() == 5
    assert errors(page) == []


def test_camera_tiles_show_the_latest_frame_state_and_open_events(
    served: tuple[str, ApiState, list[str]], page: Any
) -> None:
    base, _, _ = served
    log_in(page, base, "vera", "vera pass")
    page.get_by_role("link", name="Cameras").click()
    page.wait_for_selector("#tiles li")
    south, north = page.locator("#tiles li").all()
    assert until(page, "() => document.querySelector('#tiles li img').naturalWidth === 160")
    assert south.locator("img").get_attribute("alt") == "latest frame of camera south"
    assert "streaming" in south.inner_text() and "no open event" in south.inner_text()
    assert south.locator(".noframe").is_hidden()
    assert "1 open event" in north.inner_text() and "refused" in north.inner_text()
    assert "backing off" in north.inner_text()
    assert until(
        page, "() => document.querySelectorAll('#tiles li')[1].querySelector('img').hidden"
    )
    assert north.locator(".noframe").inner_text() == "no frame from north yet"
    # The unreviewed count links to that camera's events.
    north.get_by_role("link").click()
    assert until(page, "() => location.search.includes('camera=north')")
    page.wait_for_selector("#events tbody tr")
    assert page.locator("#events tbody tr").count() == 2
    assert [e for e in errors(page) if "404" not in e] == []  # north's missing frame


def localized(page: Any, at: Any) -> str:
    """`at` as the page's datetime-local input takes it, in the browser's time zone."""
    return str(
        page.evaluate(
            """(iso) => { const d = new Date(iso);
                return new Date(d - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16); }""",
            at.isoformat(),
        )
    )


def keyframes_of_south(state: ApiState) -> dict[str, list[int]]:
    """Six moments of camera south kept for search, as the running service keeps them: three
    red ones (the fake encoder's "crash"), one of them event 4's peak, and three grey."""
    from hazardwatch.records import KeyframeBatch, KeyframeRecord
    from hazardwatch.search.keyframes import thumbnail, thumbnail_path, to_f16
    from hazardwatch.search.service import KeyframeSearch
    from tests.fakes import FakeEncoder

    worker = state.worker
    assert worker is not None
    records = []
    for i in range(6):
        red = i % 2 == 0
        frame = np.full((180, 320, 3), 128, np.uint8)
        if red:
            frame[40 + 10 * i : 140, 60 + 20 * i : 220] = (0, 0, 230)
        at = T0 + timedelta(minutes=4, seconds=10 * i)
        jpeg = thumbnail(frame, 160, 80)
        path = thumbnail_path("south", at)
        (state.media_dir / path).parent.mkdir(parents=True, exist_ok=True)
        (state.media_dir / path).write_bytes(jpeg)
        vector = worker.embed_images([frame])[0]
        uuid = UUIDS[4] if i == 2 else None
        records.append(
            KeyframeRecord("south", at, to_f16(vector), path, len(jpeg), FakeEncoder.name, uuid)
        )
        if uuid is not None:
            state.repository.upsert_event(
                event(4, peak_embedding=encode_embedding(vector), model_name=FakeEncoder.name,
                      snapshot_path=path, revision=9)
            )  # fmt: skip
    batch = KeyframeBatch(tuple(records))
    ids = state.repository.keyframes.add(batch.records)
    search = KeyframeSearch(state.repository.keyframes, FakeEncoder.name, state.metrics)
    search.stored(ids, batch)
    search.loading = False
    state.search = search
    return {"red": ids[0::2], "grey": ids[1::2]}


def result_ids(page: Any) -> list[int]:
    return [
        int(i)
        for i in page.eval_on_selector_all("#results li", "l => l.map(x => x.dataset.keyframe)")
    ]


def test_search_in_words_then_find_similar_from_a_result_and_from_an_event(
    served: tuple[str, ApiState, list[str]], page: Any
) -> None:
    from hazardwatch.search.embedder import WorkerEmbedder

    base, state, _ = served
    assert state.worker is not None
    state.embedder = WorkerEmbedder(state.worker)
    kept = keyframes_of_south(state)
    log_in(page, base, "vera", "vera pass")
    page.get_by_role("link", name="Search").click()
    page.wait_for_selector("#search-form")
    assert "Type what to look for" in page.locator("#search-status").inner_text()
    page.get_by_label("Look for").fill("a car crash")
    page.get_by_role("button", name="Search").click()
    assert until(page, "() => document.querySelectorAll('#results li').length === 6")
    assert sorted(result_ids(page)[:3]) == sorted(kept["red"])  # the sight first
    assert "6 moments for “a car crash”" in page.locator("#search-status").inner_text()
    assert until(page, "() => document.querySelector('#results img').naturalWidth === 160")
    assert "q=a+car+crash" in page.evaluate("location.search")
    # The peak of event 4 links to the event.
    peak = page.locator(f"#results li[data-keyframe='{kept['red'][1]}']")
    assert peak.locator("a.event").inner_text() == "fire_smoke event"
    # Find similar from the best result: the other red moments first, itself left out.
    first = result_ids(page)[0]
    page.locator("#results li").first.get_by_role("button", name="Find similar").click()
    assert until(page, f"() => location.search.includes('like_keyframe={first}')")
    assert until(page, "() => document.querySelectorAll('#results li').length === 5")
    assert first not in result_ids(page)
    assert sorted(result_ids(page)[:2]) == sorted(set(kept["red"]) - {first})
    # From the event's detail: moments like its peak, on the search view.
    page.goto(base + f"/?event={UUIDS[4]}")
    page.wait_for_selector("#detail:not([hidden])")
    page.get_by_role("button", name="Find similar").click()
    assert until(page, f"() => location.search.includes('like_event={UUIDS[4]}')")
    assert until(page, "() => document.querySelectorAll('#results li').length === 5")
    assert kept["red"][1] not in result_ids(page)
    assert sorted(result_ids(page)[:2]) == sorted(set(kept["red"]) - {kept["red"][1]})
    assert errors(page) == []


def test_an_admin_adds_edits_and_deletes_a_class_and_a_viewer_only_reads(
    served: tuple[str, ApiState, list[str]], page: Any, tmp_path: Path
) -> None:
    from hazardwatch.scoring.bank import DEFAULT_BANK
    from hazardwatch.scoring.bank_source import DatabaseBank, FileBank

    base, state, _ = served
    bank_file = tmp_path / "bank.yaml"
    bank_file.write_text(DEFAULT_BANK.read_text())
    state.banks = DatabaseBank(state.repository.banks, FileBank(bank_file))
    log_in(page, base, "ada", "ada pass")
    page.get_by_role("link", name="Classes").click()
    page.wait_for_selector("#class-list tbody tr")
    assert "from the bank file" in page.locator("#bank-version").inner_text()
    editor = page.locator("#class-form")
    editor.get_by_label("Name").fill("forklift_in_walkway")
    editor.get_by_label("Prompts, one a line").fill(
        "a forklift in a pedestrian walkway\na forklift driving among people"
    )
    editor.get_by_label("Cameras").fill("south")
    editor.get_by_role("button", name="Save class").click()
    assert until(
        page, "() => document.querySelector('#class-status').textContent.includes('added')"
    )
    row = page.locator("#class-list tr[data-name='forklift_in_walkway']")
    assert "south" in row.inner_text() and "driving among people" in row.inner_text()
    assert "from the database" in page.locator("#bank-version").inner_text()
    assert "ada created forklift_in_walkway" in page.locator("#class-history").inner_text()
    # A wrong camera is refused with the reason, and nothing changes.
    row.click()
    editor.get_by_label("Cameras").fill("south, nowhere")
    editor.get_by_role("button", name="Save class").click()
    assert until(
        page, "() => document.querySelector('#class-status').textContent.includes('nowhere')"
    )
    assert "Not saved" in page.locator("#class-status").inner_text()
    editor.get_by_label("Cameras").fill("south, north")
    editor.get_by_label("Severity").select_option("critical")
    editor.get_by_role("button", name="Save class").click()
    assert until(
        page,
        "() => document.querySelector('#class-status').textContent"
        ".includes('forklift_in_walkway saved')",
    )
    assert "critical" in row.inner_text() and "north" in row.inner_text()
    row.click()
    editor.get_by_role("button", name="Delete class").click()
    assert until(
        page, "() => !document.querySelector(\"#class-list tr[data-name='forklift_in_walkway']\")"
    )
    assert [h.action for h in state.repository.banks.history()] == ["delete", "update", "create"]
    assert [e for e in errors(page) if "422" not in e] == []  # the refused camera
    # A viewer sees the classes and no editor.
    page.get_by_role("button", name="Log out").click()
    log_in(page, base, "vera", "vera pass")
    page.goto(base + "/?view=classes")
    page.wait_for_selector("#class-list tbody tr")
    assert editor.is_hidden()


def test_an_admin_turns_search_results_into_a_class_by_example(
    served: tuple[str, ApiState, list[str]], page: Any, tmp_path: Path
) -> None:
    """Issue 26.4 on the page: moments found by words become the examples of a new class,
    which the class list shows as described by example; a viewer gets no such button."""
    from hazardwatch.scoring.bank import DEFAULT_BANK
    from hazardwatch.scoring.bank_source import DatabaseBank, FileBank
    from hazardwatch.search.embedder import WorkerEmbedder

    base, state, _ = served
    assert state.worker is not None
    state.embedder = WorkerEmbedder(state.worker)
    bank_file = tmp_path / "bank.yaml"
    bank_file.write_text(DEFAULT_BANK.read_text())
    state.banks = DatabaseBank(state.repository.banks, FileBank(bank_file))
    kept = keyframes_of_south(state)
    log_in(page, base, "ada", "ada pass")
    page.goto(base + "/?view=search&q=a+car+crash")
    assert until(page, "() => document.querySelectorAll('#results li').length === 6")
    best = result_ids(page)[:2]
    assert set(best) <= set(kept["red"])
    first = page.locator(f"#results li[data-keyframe='{best[0]}']")
    first.get_by_role("button", name="Add to class").click()
    assert until(page, "() => document.querySelector('#search-status').textContent"
                       ".includes('Name the class first')")  # fmt: skip
    page.locator("#example-class").fill("red_sight")
    first.get_by_role("button", name="Add to class").click()
    assert until(page, "() => document.querySelector('#search-status').textContent"
                       ".includes('red_sight now has 1 example')")  # fmt: skip
    page.locator(f"#results li[data-keyframe='{best[1]}']").get_by_role(
        "button", name="Add to class"
    ).click()
    assert until(page, "() => document.querySelector('#search-status').textContent"
                       ".includes('red_sight now has 2 examples')")  # fmt: skip
    sight = state.banks.current().get("red_sight")
    assert [e.source for e in sight.examples] == [f"keyframe:{k}" for k in best]
    page.get_by_role("link", name="Classes").click()
    row = page.locator("#class-list tr[data-name='red_sight']")
    row.wait_for()
    assert "by example: 2 examples" in row.inner_text()
    row.click()
    assert "keyframe:" in page.locator("#class-examples").inner_text()
    page.locator("#class-form").get_by_label("Severity").select_option("critical")
    page.locator("#class-form").get_by_role("button", name="Save class").click()
    assert until(page, "() => document.querySelector('#class-status').textContent"
                       ".includes('saved')")  # fmt: skip
    saved = state.banks.current().get("red_sight")
    assert saved.severity == "critical" and saved.examples == sight.examples  # kept
    assert errors(page) == []
    # A viewer searches too, but adds nothing.
    page.get_by_role("button", name="Log out").click()
    log_in(page, base, "vera", "vera pass")
    page.goto(base + "/?view=search&q=a+car+crash")
    assert until(page, "() => document.querySelectorAll('#results li').length === 6")
    assert page.get_by_role("button", name="Add to class").count() == 0
    assert page.locator("#example-bar").is_hidden()
