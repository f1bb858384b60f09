from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest

from hazardwatch.records import EventRecord, ScoreSample, Weather
from hazardwatch.storage.repository import Repository

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def make_event(uuid: str = "e-1", **changes: object) -> EventRecord:
    base = EventRecord(
        uuid=uuid,
        camera="gate",
        class_name="traffic_accident",
        severity="critical",
        status="open",
        started_at=T0,
        peak_at=T0,
        peak_score=0.8,
        mean_score=0.6,
        model_name="ViT-B/32",
        prompt_bank_version="abc123",
        revision=0,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_event_round_trip(repo: Repository) -> None:
    event = make_event(snapshot_path="gate/e-1.jpg")
    repo.upsert_event(event)
    stored = repo.get_event("e-1")
    assert stored is not None
    # Stored with millisecond precision: microseconds beyond ms are dropped.
    expected = dataclasses.replace(
        event, started_at=T0.replace(microsecond=123000), peak_at=T0.replace(microsecond=123000)
    )
    assert stored == expected


def test_weather_is_stored_attached_late_and_never_cleared(repo: Repository) -> None:
    at = T0.replace(microsecond=0)  # the provider's times are whole minutes
    fog = Weather(45, "fog", -1.5, 0.0, 4.0, 300.0, at)
    repo.upsert_event(make_event("e-w", weather=fog))
    assert repo.get_event("e-w").weather == fog  # type: ignore[union-attr]
    # A later write without weather (it is the same event) keeps it.
    repo.upsert_event(make_event("e-w", revision=1, peak_score=0.95))
    assert repo.get_event("e-w").weather == fog  # type: ignore[union-attr]
    # Weather that arrives after the first write.
    repo.upsert_event(make_event("e-late"))
    assert repo.get_event("e-late").weather is None  # type: ignore[union-attr]
    rain = Weather(61, "slight rain", 3.4, 0.6, 17.3, None, at)
    assert repo.set_weather("e-late", rain) and not repo.set_weather("no-such", rain)
    assert repo.get_event("e-late").weather == rain  # type: ignore[union-attr]


def test_what_opened_an_event_is_stored_and_never_cleared(repo: Repository) -> None:
    repo.upsert_event(make_event("e-o", opened_statistic=12.5, opened_threshold=10.0))
    stored = repo.get_event("e-o")
    assert stored is not None
    assert (stored.opened_statistic, stored.opened_threshold) == (12.5, 10.0)
    repo.upsert_event(make_event("e-o", revision=1, status="closed", ended_at=T0))
    stored = repo.get_event("e-o")
    assert stored is not None and stored.status == "closed"
    assert (stored.opened_statistic, stored.opened_threshold) == (12.5, 10.0)


def test_upsert_is_idempotent(repo: Repository) -> None:
    event = make_event()
    for _ in range(3):
        repo.upsert_event(event)
    assert len(repo.list_events()) == 1


def test_later_revision_updates_and_older_never_wins(repo: Repository) -> None:
    repo.upsert_event(make_event(revision=0))
    closed = make_event(
        status="closed", ended_at=T0 + timedelta(seconds=4), peak_score=0.95, revision=2
    )
    repo.upsert_event(closed)
    repo.upsert_event(make_event(status="open", peak_score=0.7, revision=1))  # late replay
    stored = repo.get_event("e-1")
    assert stored is not None
    assert (stored.status, stored.peak_score, stored.revision) == ("closed", 0.95, 2)
    assert stored.ended_at == (T0 + timedelta(seconds=4)).replace(microsecond=123000)


def test_timestamps_are_converted_to_utc(repo: Repository) -> None:
    tokyo = timezone(timedelta(hours=9))
    local = datetime(2026, 3, 1, 21, 0, 0, 500000, tzinfo=tokyo)
    repo.upsert_event(make_event(started_at=local, peak_at=local))
    stored = repo.get_event("e-1")
    assert stored is not None
    assert stored.started_at == datetime(2026, 3, 1, 12, 0, 0, 500000, tzinfo=UTC)
    assert stored.started_at.tzinfo == UTC


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        make_event(started_at=datetime(2026, 3, 1, 12, 0, 0))


def test_list_events_orders_newest_first_and_filters(repo: Repository) -> None:
    for i in range(5):
        repo.upsert_event(
            make_event(
                uuid=f"e-{i}",
                camera="gate" if i % 2 == 0 else "yard",
                class_name="fire" if i == 4 else "traffic_accident",
                started_at=T0 + timedelta(minutes=i),
                peak_at=T0 + timedelta(minutes=i),
                peak_score=0.5 + i / 10,
            )
        )
    assert [e.uuid for e in repo.list_events()] == ["e-4", "e-3", "e-2", "e-1", "e-0"]
    assert [e.uuid for e in repo.list_events(camera="yard")] == ["e-3", "e-1"]
    assert [e.uuid for e in repo.list_events(class_name="fire")] == ["e-4"]
    assert [e.uuid for e in repo.list_events(min_score=0.75)] == ["e-4", "e-3"]
    window = repo.list_events(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3))
    assert [e.uuid for e in window] == ["e-2", "e-1"]
    assert [e.uuid for e in repo.list_events(limit=2, offset=1)] == ["e-3", "e-2"]


@pytest.mark.parametrize("camera", [None, "yard"])
def test_keyset_pages_walk_the_list_both_ways_through_ties(
    repo: Repository, camera: str | None
) -> None:
    # 23 events, many started in the same millisecond: the order's tie-break (id) must
    # neither skip nor repeat one at a page boundary.
    for i in range(23):
        at = T0 + timedelta(seconds=i // 4)
        repo.upsert_event(
            make_event(uuid=f"k-{i:02d}", camera="yard" if i % 3 else "gate", started_at=at)
        )
    everything = [e.uuid for e in repo.list_events(camera=camera, limit=100)]
    pages: list[list[str]] = []
    page = repo.list_events(camera=camera, limit=4)
    while page:
        pages.append([e.uuid for e in page])
        page = repo.list_events(camera=camera, limit=4, before=page[-1].uuid)
    assert [u for p in pages for u in p] == everything
    assert pages[:-1] == [everything[i : i + 4] for i in range(0, 4 * (len(pages) - 1), 4)]
    # And back, newest first within each page, to the top.
    back = [pages[-1]]
    while (newer := repo.list_events(camera=camera, limit=4, after=back[-1][0])) != []:
        back.append([e.uuid for e in newer])
    assert [u for p in reversed(back) for u in p] == everything
    with pytest.raises(KeyError):
        repo.list_events(before="no-such-event")


def test_open_events_are_counted_per_camera(repo: Repository) -> None:
    repo.upsert_event(make_event("o-1", camera="gate"))
    repo.upsert_event(make_event("o-2", camera="gate", status="closed", ended_at=T0))
    repo.upsert_event(make_event("o-3", camera="yard"))
    assert repo.open_by_camera() == {"gate": 1, "yard": 1}


@pytest.mark.parametrize(("limit", "offset"), [(0, 0), (1001, 0), (10, -1)])
def test_list_events_rejects_bad_pages(repo: Repository, limit: int, offset: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        repo.list_events(limit=limit, offset=offset)


def test_close_open_events_touches_only_the_cameras_a_node_owns(repo: Repository) -> None:
    repo.upsert_event(make_event(uuid="mine", camera="north"))
    repo.upsert_event(make_event(uuid="theirs", camera="south"))
    assert repo.close_open_events(T0, cameras=["north", "east"]) == 1
    assert repo.get_event("mine").status == "interrupted"  # type: ignore[union-attr]
    assert repo.get_event("theirs").status == "open"  # type: ignore[union-attr]
    assert repo.close_open_events(T0, cameras=[]) == 0
    assert repo.close_open_events(T0) == 1  # None: every camera


def test_close_open_events_marks_them_interrupted(repo: Repository) -> None:
    repo.upsert_event(make_event(uuid="open-1"))
    repo.upsert_event(make_event(uuid="done-1", status="closed", ended_at=T0))
    end = T0 + timedelta(hours=1)
    assert repo.close_open_events(end) == 1
    interrupted = repo.get_event("open-1")
    assert interrupted is not None
    assert (interrupted.status, interrupted.ended_at) == (
        "interrupted",
        end.replace(microsecond=123000),
    )
    done = repo.get_event("done-1")
    assert done is not None and done.status == "closed"


def test_cameras_are_registered_once(repo: Repository) -> None:
    repo.ensure_cameras([("gate", "rtsp"), ("yard", "file")])
    repo.ensure_cameras([("gate", "rtsp")])
    repo.upsert_event(make_event())
    cameras = repo.list_cameras()
    assert [(c["name"], c["source_kind"]) for c in cameras] == [("gate", "rtsp"), ("yard", "file")]


def test_score_series_round_trip_in_time_order(repo: Repository) -> None:
    samples = [
        ScoreSample(camera="gate", ts=T0 + timedelta(seconds=s), class_name=c, score=v)
        for s, c, v in [(2, "fire", 0.1), (0, "fire", 0.3), (1, "traffic_accident", 0.9)]
    ]
    repo.add_scores(samples)
    got = repo.list_scores("gate", T0, T0 + timedelta(seconds=10))
    assert [(s.ts - T0.replace(microsecond=123000)).seconds for s in got] == [0, 1, 2]
    assert [s.score for s in repo.list_scores("gate", T0, T0 + timedelta(seconds=10), "fire")] == [
        0.3,
        0.1,
    ]


def test_camera_states_are_inserted_then_replaced(repo: Repository) -> None:
    assert repo.load_camera_states() == {}
    big = "x" * 200_000  # 32 ViT-L references in base64 fit (MEDIUMTEXT on MySQL)
    repo.save_camera_state("gate", big, "calibrated", 32)
    repo.save_camera_state("yard", '{"version": 1}', "prior", 0)
    repo.save_camera_state("gate", '{"version": 1, "new": true}', "calibrated", 3)
    assert repo.load_camera_states() == {
        "gate": '{"version": 1, "new": true}',
        "yard": '{"version": 1}',
    }


def test_verdicts_are_recorded_listed_and_counted(repo: Repository) -> None:
    repo.upsert_event(make_event("e-1", peak_embedding="AAAA"))
    repo.upsert_event(make_event("e-2", started_at=T0 + timedelta(minutes=1)))
    assert repo.set_verdict("nope", "confirmed", None) is None
    marked = repo.set_verdict("e-1", "false_alarm", "the red sign")
    assert marked is not None and marked.verdict == "false_alarm"
    assert marked.verdict_note == "the red sign" and marked.verdict_at is not None
    assert marked.peak_embedding == "AAAA"
    assert [e.uuid for e in repo.list_events(verdict="false_alarm")] == ["e-1"]
    assert repo.list_events(verdict="confirmed") == []
    # A later detector write of the event keeps the verdict and the embedding.
    repo.upsert_event(make_event("e-1", status="closed", revision=5))
    again = repo.get_event("e-1")
    assert again is not None and again.verdict == "false_alarm" and again.status == "closed"
    assert again.peak_embedding == "AAAA"


def test_a_running_service_never_overwrites_a_newer_calibration(repo: Repository) -> None:
    calibrated = '{"version": 1, "calibrated_at": 2000.0}'
    assert repo.save_camera_state("gate", calibrated, "calibrated", 5, replace_newer=True)
    # The service's in-memory state predates it: kept out.
    assert not repo.save_camera_state("gate", '{"calibrated_at": 1000.0}', "calibrated", 9, 1000.0)
    assert repo.load_camera_states()["gate"] == calibrated
    # Once it runs with that calibration (same stamp), it may save what it learns.
    assert repo.save_camera_state(
        "gate", '{"calibrated_at": 2000.0, "b": 1}', "calibrated", 6, 2000.0
    )
    # A corrupt stored row may be replaced by anything.
    repo.save_camera_state("yard", "not json", "prior", 0, replace_newer=True)
    assert repo.save_camera_state("yard", "{}", "prior", 0)


def test_last_seen_at_follows_the_newest_scores_and_events(repo: Repository) -> None:
    def seen(name: str) -> datetime | None:
        rows = {row["name"]: row["last_seen_at"] for row in repo.list_cameras()}
        return rows[name]

    repo.add_scores([ScoreSample("gate", T0, "fire_smoke", 0.1)])
    assert seen("gate") == T0.replace(microsecond=123000)
    later = T0 + timedelta(minutes=5)
    repo.add_scores([ScoreSample("gate", later, "fire_smoke", 0.1)])
    repo.add_scores([ScoreSample("gate", T0, "fire_smoke", 0.1)])  # a late replay: no going back
    assert seen("gate") == later.replace(microsecond=123000)
    repo.upsert_event(make_event("e-seen", camera="yard", peak_at=later))
    assert seen("yard") == later.replace(microsecond=123000)
    # One batch of many cameras: each moves to its own newest frame, none goes back.
    repo.add_scores(
        [ScoreSample("gate", T0 + timedelta(minutes=9), "fire_smoke", 0.1)]
        + [ScoreSample("yard", T0, "fire_smoke", 0.1)]
        + [ScoreSample(f"c{i}", T0 + timedelta(seconds=i), "fire_smoke", 0.1) for i in range(100)]
        + [ScoreSample("c7", T0, "fire_smoke", 0.1)]
    )
    assert seen("gate") == (T0 + timedelta(minutes=9)).replace(microsecond=123000)
    assert seen("yard") == later.replace(microsecond=123000)
    for i in range(100):  # more than one statement's worth (SEEN_A_STATEMENT)
        assert seen(f"c{i}") == (T0 + timedelta(seconds=i)).replace(microsecond=123000)


def test_restored_states_keep_as_many_references_as_configured(repo: Repository) -> None:
    import json

    import numpy as np

    from hazardwatch.detect.normal import CameraNormal, ReferenceSet
    from hazardwatch.events_side import load_camera_states

    state = CameraNormal(references=ReferenceSet(64))
    state.references.extend(np.eye(40, 48, dtype=np.float32))  # 40 distinct sights
    repo.save_camera_state("gate", json.dumps(state.to_json()), "calibrated", 40)
    repo.save_camera_state("bad", "{not json", "prior", 0)
    assert len(load_camera_states(repo, max_references=64)["gate"].references) == 40
    restored = load_camera_states(repo)
    assert len(restored["gate"].references) == 32 and "bad" not in restored  # skipped, logged


def test_a_score_row_written_again_is_stored_once(repo: Repository) -> None:
    """A frame the broker delivers again after a crash gives the same rows: kept once."""
    first = [ScoreSample("gate", T0, "fire_smoke", 0.25), ScoreSample("gate", T0, "crash", 0.5)]
    repo.add_scores(first)
    repo.add_scores([*first, ScoreSample("gate", T0 + timedelta(seconds=1), "crash", 0.6)])
    got = repo.list_scores("gate", T0 - timedelta(seconds=1), T0 + timedelta(seconds=5))
    assert sorted((s.class_name, s.score) for s in got) == [
        ("crash", 0.5),
        ("crash", 0.6),
        ("fire_smoke", 0.25),
    ]
    assert repo.scores_stored_until() == {
        "gate": (T0 + timedelta(seconds=1)).replace(microsecond=123000)
    }


def test_keyframes_of_many_cameras_in_one_batch_keep_their_ids(repo: Repository) -> None:
    """One batch of 150 keyframes over 90 cameras (several a camera, some cameras at the
    same instant): each gets its own row, in order, and the same batch again (a frame
    delivered twice) finds the same ids rather than storing anything twice."""
    from hazardwatch.records import KeyframeRecord

    records = [
        KeyframeRecord(
            camera=f"k{i % 90}",
            ts=T0 + timedelta(seconds=10 * (i // 90)),
            embedding=b"\x00\x3c" * 4,
            thumbnail_path=f"k{i % 90}/keyframes/{i}.jpg",
            thumbnail_bytes=100,
            model_name="m",
        )
        for i in range(150)
    ]
    ids = repo.keyframes.add(records)
    assert len(set(ids)) == 150
    assert repo.keyframes.add(records[::-1]) == ids[::-1]
    assert repo.keyframes.add(records[40:41]) == [ids[40]]
