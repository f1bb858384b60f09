"""`hazardwatch reindex`: keyframes of an old model embedded again from their thumbnails,
resumable after an interruption, through the function and the command (real loader,
tiny CLIP weights)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from hazardwatch.cli import main
from hazardwatch.records import KeyframeRecord
from hazardwatch.search.keyframes import thumbnail, thumbnail_path
from hazardwatch.search.reindex import reindex
from hazardwatch.storage import migrate
from hazardwatch.storage.engine import create_engine
from hazardwatch.storage.repository import Repository
from tests.fakes import CRASH, FakeEncoder

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def store_old_keyframes(repository: Repository, media: Path, count: int) -> list[int]:
    """`count` keyframes embedded by "old-model" (random vectors), every other one red."""
    rng = np.random.default_rng(5)
    records = []
    for i in range(count):
        frame = np.full((180, 320, 3), 128, np.uint8)
        if i % 2 == 0:
            frame[40:140, 80:240] = (0, 0, 230)
        at = T0 + timedelta(seconds=10 * i)
        jpeg = thumbnail(frame, 320, 80)
        path = thumbnail_path("yard", at)
        (media / path).parent.mkdir(parents=True, exist_ok=True)
        (media / path).write_bytes(jpeg)
        old = rng.standard_normal(512).astype(np.float16).tobytes()
        records.append(KeyframeRecord("yard", at, old, path, len(jpeg), "old-model"))
    return repository.keyframes.add(records)


def test_reindex_embeds_old_keyframes_again_and_resumes_after_an_interruption(
    tmp_path: Path, database_url: str
) -> None:
    engine = create_engine(database_url)
    migrate.upgrade(engine)
    repository = Repository(engine)
    media = tmp_path / "media"
    ids = store_old_keyframes(repository, media, 10)
    (media / repository.keyframes.get([ids[-1]])[ids[-1]].thumbnail_path).unlink()
    encoder = FakeEncoder()
    seen: list[int] = []

    def interrupt(done: int) -> None:
        seen.append(done)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reindex(repository.keyframes, media, encoder, progress=interrupt, batch=4)
    table = repository.keyframes
    assert table.count(model_name=encoder.name) == 4  # the first batch is stored
    result = reindex(table, media, encoder, batch=4)
    assert (result.embedded, result.missing) == (5, 1)
    assert table.count(model_name=encoder.name) == 9 and table.count() == 9
    for rows in table.scan(model_name=encoder.name):
        for key, vector in zip(rows.ids, rows.embeddings, strict=True):
            crash = float(np.frombuffer(vector, np.float16).astype(np.float32) @ CRASH)
            red = ids.index(key) % 2 == 0
            assert (crash > 0.5) == red, (key, crash)
    # Nothing left: a second run embeds nothing.
    assert reindex(table, media, encoder).embedded == 0
    engine.dispose()


def test_the_reindex_command_uses_the_configured_model(
    tmp_path: Path, sqlite_url: str, tiny_clip_weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = create_engine(sqlite_url)
    migrate.upgrade(engine)
    media = tmp_path / "media"
    store_old_keyframes(Repository(engine), media, 3)
    config = tmp_path / "hazardwatch.yaml"
    config.write_text(
        f"storage: {{database_url: '{sqlite_url}', data_dir: '{tmp_path / 'data'}'}}\n"
        f"media: {{dir: '{media}'}}\n"
        f"scoring: {{model: '{tiny_clip_weights}', device: cpu}}\n"
    )
    assert main(["reindex", "--config", str(config), "--camera", "yard"]) == 0
    assert "3 keyframe(s) embedded by" in capsys.readouterr().out
    with engine.connect() as conn:
        models = conn.execute(sa.text("SELECT DISTINCT model_name FROM keyframes")).scalars()
        assert list(models) != ["old-model"]
    assert main(["reindex", "--config", str(config)]) == 0
    assert "already embedded" in capsys.readouterr().out
    assert main(["reindex", "--config", str(config), "--since", "yesterday"]) == 2
    assert "not an ISO 8601 time" in capsys.readouterr().err
    engine.dispose()
