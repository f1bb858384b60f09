"""Bad input, fuzzed: 1,000 generated cases per entry point, none may crash or hang.

Each input must either be accepted or be refused with the entry point's own clear error
(ConfigError, ValueError, an HTTP 4xx with a message) — never another exception, never 5xx.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from hazardwatch.api.app import ApiState, create_app
from hazardwatch.errors import ConfigError
from hazardwatch.handoff.queue import LocalQueue
from hazardwatch.metrics import Metrics
from hazardwatch.motion.gate import GateParams, MotionGate
from hazardwatch.scoring.bank import DEFAULT_BANK, PromptBank, load_bank
from hazardwatch.scoring.preprocess import preprocess_batch
from hazardwatch.scoring.worker import ScoringWorker
from hazardwatch.settings import Settings, load_settings
from hazardwatch.storage import migrate
from hazardwatch.storage.engine import create_engine
from hazardwatch.storage.repository import Repository
from tests.fakes import FakeEncoder
from tests.helpers import api_client

pytestmark = pytest.mark.fault
CASES = settings(
    max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck), database=None
)

SECTIONS = list(Settings.model_fields)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
    st.text(max_size=30), st.sampled_from(["${NOPE_NOT_SET}", "rtsp://u:p@h/x", "-1", "1e999"]),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
section_keys = st.sampled_from(
    ["threshold", "min_area", "port", "host", "url", "name", "enter_threshold", "exit_threshold",
     "cameras", "database_url", "batch_size", "retention_days", "token", "masks", "nope"]
)  # fmt: skip
configs = st.dictionaries(
    st.sampled_from([*SECTIONS, "unknown_section"]),
    st.one_of(values, st.dictionaries(section_keys, values, max_size=5),
              st.lists(st.dictionaries(section_keys, values, max_size=4), max_size=3)),
    max_size=5,
)  # fmt: skip


@CASES
@given(data=configs)
def test_config_loader_1000_cases_accept_or_say_why(
    tmp_path_factory: Any, data: dict[str, Any]
) -> None:
    path = tmp_path_factory.mktemp("cfg") / "hw.yaml"
    try:
        path.write_text(yaml.safe_dump(data, allow_unicode=True))
    except (yaml.YAMLError, UnicodeEncodeError):
        return
    try:
        load_settings(path)
    except ConfigError as exc:
        assert str(exc).strip()
        assert "p@h" not in str(exc)  # credentials in URLs never echoed


@CASES
@given(text=st.one_of(
    st.text(max_size=200),
    st.builds(yaml.safe_dump, st.dictionaries(
        st.sampled_from(["classes", "description", "x"]),
        st.dictionaries(st.text(max_size=10), values, max_size=4), max_size=3)),
))  # fmt: skip
def test_prompt_bank_loader_1000_cases_accept_or_say_why(text: str) -> None:
    try:
        PromptBank.from_text(text, "fuzz.yaml")
    except ConfigError as exc:
        assert "fuzz.yaml" in str(exc)


dtypes = st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int8, np.bool_])
frames = arrays(dtypes, array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=40))


@CASES
@given(image=frames)
def test_frame_path_1000_cases_refuse_bad_frames_with_value_error(image: np.ndarray) -> None:
    gate = MotionGate(GateParams())
    for _ in range(2):  # the second call compares with the first
        try:
            gate.update(image)
        except ValueError as exc:
            assert "frame" in str(exc)
    try:
        batch = preprocess_batch([image], 32)
    except ValueError as exc:
        assert "frame" in str(exc) or "image" in str(exc)
    else:
        assert batch.shape == (1, 3, 32, 32) and np.isfinite(batch).all()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    tmp = tmp_path_factory.mktemp("api")
    engine = create_engine(f"sqlite:///{tmp / 'hw.db'}")
    migrate.upgrade(engine)
    worker = ScoringWorker(FakeEncoder(), load_bank(DEFAULT_BANK), LocalQueue(2), lambda _: None)
    return api_client(create_app(ApiState(Repository(engine), tmp, Metrics(), worker=worker)))


def _image_like(seed: int, kind: str) -> bytes:
    import cv2

    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(1, 64)), int(rng.integers(1, 64))
    _, data = cv2.imencode(kind, rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    raw = bytearray(data.tobytes())
    for _ in range(int(rng.integers(0, 4))):  # corrupt a few bytes now and then
        raw[int(rng.integers(0, len(raw)))] = int(rng.integers(0, 256))
    return bytes(raw[: int(rng.integers(1, len(raw) + 1))])


uploads = st.one_of(
    st.binary(max_size=2048),
    st.builds(_image_like, st.integers(0, 10**6), st.sampled_from([".jpg", ".png", ".bmp"])),
)


@CASES
@given(data=uploads, overlay=st.booleans())
def test_score_upload_1000_cases_never_500(client: TestClient, data: bytes, overlay: bool) -> None:
    response = client.post(
        f"/api/v1/score?overlay={int(overlay)}", files={"file": ("upload", data)}
    )
    assert response.status_code in (200, 413, 415, 422), response.text
    if response.status_code != 200:
        assert response.json()["detail"]


@CASES
@given(params=st.dictionaries(
    st.sampled_from(["camera", "class", "status", "since", "until", "min_score", "limit",
                     "offset", "junk"]),
    st.one_of(st.text(max_size=40), st.integers().map(str),
              st.floats(allow_nan=True).map(str),
              st.sampled_from(["2026-01-01T00:00:00Z", "2026-13-01", "open", "-1", "1e309"])),
    max_size=5,
))  # fmt: skip
def test_event_query_parameters_1000_cases_never_500(
    client: TestClient, params: dict[str, str]
) -> None:
    response = client.get("/api/v1/events", params=params)
    assert response.status_code in (200, 422), response.text
