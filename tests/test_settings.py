from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from hazardwatch.capture.reader import ReaderOptions
from hazardwatch.capture.recorder import RecorderOptions
from hazardwatch.detect.detector import DetectorParams
from hazardwatch.errors import ConfigError
from hazardwatch.handoff.frames import FramesLayout
from hazardwatch.handoff.scores import ScoresLayout
from hazardwatch.images import ImageOptions
from hazardwatch.motion.gate import GateParams
from hazardwatch.motion.snippets import SamplerParams
from hazardwatch.outputs.alerts import AlertPolicy
from hazardwatch.settings import CameraSettings, Settings, load_settings, models_in

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = REPO_ROOT / "config" / "hazardwatch.example.yaml"
no_error = contextlib.nullcontext()


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("HAZARDWATCH_") and not name.startswith("HAZARDWATCH_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_need_no_file() -> None:
    settings = load_settings(None)
    assert settings.cameras == []
    assert settings.storage.resolved_url() == "sqlite:///data/hazardwatch.db"
    assert settings.api.host == "127.0.0.1"
    assert settings.api.cors_origins == []


def test_default_file_is_picked_up_from_working_dir(tmp_path: Path) -> None:
    (tmp_path / "hazardwatch.yaml").write_text("motion:\n  threshold: 40\n")
    assert load_settings(None).motion.threshold == 40


@pytest.mark.parametrize(
    ("data", "expectation", "fragment"),
    [
        ({"cameras": [{"name": "a", "url": "rtsp://h/s"}]}, no_error, None),
        (
            {"cameras": [{"name": "a", "url": "rtsp://h/s", "bogus_key": 1}]},
            pytest.raises(ConfigError),
            "cameras[0].bogus_key: unknown key 'bogus_key'",
        ),
        ({"bogus_section": {}}, pytest.raises(ConfigError), "unknown key 'bogus_section'"),
        ({"motion": {"threshold": 0}}, pytest.raises(ConfigError), "motion.threshold"),
        ({"motion": {"blur_kernel": 4}}, pytest.raises(ConfigError), "must be odd"),
        (
            {"detector": {"enter_threshold": 0.2, "exit_threshold": 0.4}},
            pytest.raises(ConfigError),
            "must be <= enter_threshold",
        ),
        ({"scoring": {"device": "tpu"}}, pytest.raises(ConfigError), "'auto', 'cpu' or 'cuda'"),
        (
            {"cameras": [{"name": "a", "url": "ftp://h"}]},
            pytest.raises(ConfigError),
            "scheme 'ftp' is not supported",
        ),
        (
            {"cameras": [{"name": "a", "url": "x.mp4"}, {"name": "a", "url": "y.mp4"}]},
            pytest.raises(ConfigError),
            "used twice",
        ),
        (
            {"cameras": [{"name": "bad name!", "url": "x.mp4"}]},
            pytest.raises(ConfigError),
            "cameras[0].name",
        ),
        (
            {"cameras": [{"name": "a", "url": "x.mp4", "masks": [[[0, 0], [1, 0]]]}]},
            pytest.raises(ConfigError),
            "needs at least 3",
        ),
        (
            {"cameras": [{"name": "a", "url": "x.mp4", "masks": [[[0, 0], [2, 0], [0, 1]]]}]},
            pytest.raises(ConfigError),
            "outside 0..1",
        ),
        ("- just\n- a list\n", pytest.raises(ConfigError), "must hold a mapping"),
        ("motion: [unclosed\n", pytest.raises(ConfigError), "not valid YAML at line"),
    ],
)
def test_validation_names_the_key(
    tmp_path: Path, data: Any, expectation: Any, fragment: str | None
) -> None:
    with expectation as caught:
        load_settings(write(tmp_path, data))
    if fragment is not None:
        assert fragment in str(caught.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, {"api": {"port": 9000}, "motion": {"threshold": 30, "min_area": 0.01}})
    monkeypatch.setenv("HAZARDWATCH_API__PORT", "9100")
    monkeypatch.setenv("HAZARDWATCH_MOTION__THRESHOLD", "50")
    settings = load_settings(path)
    assert settings.api.port == 9100
    assert settings.motion.threshold == 50
    assert settings.motion.min_area == 0.01  # merged, not replaced


def test_unknown_environment_override_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAZARDWATCH_MOTOIN__THRESHOLD", "50")
    with pytest.raises(ConfigError, match="HAZARDWATCH_MOTOIN__THRESHOLD"):
        load_settings(None)


def test_env_references_expand_and_missing_ones_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = {"cameras": [{"name": "a", "url": "rtsp://admin:${CAM_PW}@10.0.0.5/s"}]}
    monkeypatch.setenv("CAM_PW", "hunter2")
    settings = load_settings(write(tmp_path, data))
    assert settings.cameras[0].url.get_secret_value() == "rtsp://admin:hunter2@10.0.0.5/s"
    monkeypatch.delenv("CAM_PW")
    with pytest.raises(ConfigError, match=r"cameras\[0\].url: refers to \$\{CAM_PW\}"):
        load_settings(write(tmp_path, data))


def test_secrets_never_printed(tmp_path: Path) -> None:
    data = {
        "cameras": [{"name": "a", "url": "rtsp://admin:hunter2@10.0.0.5/s"}],
        "storage": {"database_url": "mysql+pymysql://hw:dbsecret@db/hazardwatch"},
        "api": {"token": "apitoken123"},
        "alerts": {"webhook": {"url": "https://hooks/x?token=hooksecret", "secret": "hmackey"}},
    }
    settings = load_settings(write(tmp_path, data))
    shown = repr(settings) + str(settings) + yaml.safe_dump(settings.redacted())
    for secret in ("hunter2", "dbsecret", "apitoken123", "hooksecret", "hmackey"):
        assert secret not in shown
    assert settings.redacted()["cameras"][0]["url"] == "rtsp://admin:***@10.0.0.5/s"


def test_a_raw_at_or_slash_in_a_camera_password_fails_config_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 29.5: `config check` said OK and the probe then reached a host made of a piece
    of the password. (`run` skips such a camera and reports why, as for any unusable URL.)"""
    from hazardwatch.cli import main

    url = "rtsp://viewer:p@ss/w#rd?x@127.0.0.1:18554/yard"
    config = write(tmp_path, {"cameras": [{"name": "yard", "url": url}]})
    assert main(["config", "check", "--config", str(config)]) == 2
    printed = capsys.readouterr()
    assert "percent-encode" in printed.err and "viewer:***@127.0.0.1:18554/yard" in printed.err
    for piece in ("p@ss", "ss/w", "rd?x"):
        assert piece not in printed.out + printed.err


def test_invalid_secret_value_is_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, {"cameras": [{"name": "a", "url": "ftp://u:hunter2@h"}]}))
    assert "hunter2" not in str(caught.value)


def _all_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        keys.add(prefix + name)
        for sub in models_in(field.annotation):
            keys |= _all_keys(sub, f"{prefix}{name}.")
    return keys


def _yaml_keys(data: Any, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            keys.add(prefix + key)
            keys |= _yaml_keys(value, f"{prefix}{key}.")
    elif isinstance(data, list):
        for item in data:
            keys |= _yaml_keys(item, prefix)
    return keys


def test_example_config_documents_every_key_and_validates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CAMERA_PASSWORD", "x")
    data = yaml.safe_load(EXAMPLE.read_text())
    assert _all_keys(Settings) <= _yaml_keys(data)
    load_settings(EXAMPLE)


def test_every_field_is_documented() -> None:
    def walk(model: type[BaseModel]) -> None:
        for name, field in model.model_fields.items():
            submodels = models_in(field.annotation)
            assert field.description or submodels, f"{model.__name__}.{name} has no description"
            for sub in submodels:
                walk(sub)

    walk(Settings)


def test_a_bad_environment_value_is_blamed_on_its_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "hw.yaml"
    config.write_text("api: {host: 0.0.0.0}\n")
    monkeypatch.setenv("HAZARDWATCH_API__PORT", "abc")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    message = str(caught.value)
    assert message.startswith("environment variable is invalid")
    assert "api.port (from HAZARDWATCH_API__PORT)" in message and str(config) not in message
    config.write_text("storage: {score_interval_s: -5}\n")  # a file problem beside it
    with pytest.raises(ConfigError) as both:
        load_settings(config)
    assert str(both.value).startswith(f"config file {config} is invalid (2 problems)")
    assert "storage.score_interval_s: " in str(both.value)


def test_the_broker_url_is_shown_with_its_hosts_and_only_its_password_masked() -> None:
    """Issue 29.8: `config check` masked the whole broker URL, host included."""
    settings = load_settings(None, broker={"url": "nats://hw:s3cret@h1:4222,tls://t0ken@h2:4222"})
    shown = settings.redacted()["broker"]["url"]
    assert shown == "nats://hw:***@h1:4222,tls://***@h2:4222"
    assert "s3cret" not in repr(settings) and "t0ken" not in str(settings.broker)


def test_an_unknown_key_never_shows_its_value(tmp_path: Path) -> None:
    """Issue 30.5: `unknown key 'tokn' under api (value 'SuperSecretTok123')`."""
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, {"api": {"tokn": "SuperSecretTok123"}}))
    assert "unknown key 'tokn' under api" in str(caught.value)
    assert "SuperSecret" not in str(caught.value)


@pytest.mark.parametrize(
    "section",
    [
        {"storage": {"database_url": "mysql+pymysql://hw:Pass/w0rd#Q@db:3306/hazardwatch"}},
        {"broker": {"url": "nats://a:4222,nats://hw:Pa@ss@h:4222"}},
        {"alerts": {"webhook": {"url": "https://hw:Pa/ss@hooks.example/T0/B0"}}},
    ],
    ids=["database", "broker", "webhook"],
)
def test_every_url_setting_refuses_credentials_that_are_not_percent_encoded(
    tmp_path: Path, section: dict[str, Any]
) -> None:
    """Issue 30.5: `hw:***@Pass/w0rd#Q@…` masked wrongly, and a piece of the password was
    resolved as a host name. Refused at load, saying how to encode, echoing none of it."""
    with pytest.raises(ConfigError, match="percent-encode") as caught:
        load_settings(write(tmp_path, section))
    for piece in ("Pass", "w0rd", "Pa@ss", "ss@"):
        assert piece not in str(caught.value)


def test_percent_encoded_credentials_and_an_at_in_a_hook_query_are_fine() -> None:
    settings = load_settings(
        None,
        storage={"database_url": "mysql+pymysql://hw:Pass%2Fw0rd%23Q@db:3306/hazardwatch"},
        alerts={"webhook": {"url": "https://hooks.example:8443/a?notify=ops@example.com"}},
    )
    assert settings.storage.database_url is not None


# Each stage's parameter class beside the settings it is built from (components.py
# builds them field by field): a default that differs means a stage
# built by hand (a test, a tool, a library user) behaves unlike the service. Param field ->
# (settings section, its field), or None: not a setting (the scores stream's own limits,
# which share names with the frames stream's settings); fields not listed are looked up
# under the same name in the section.
PARITY: list[tuple[type, str, dict[str, tuple[str, str] | None]]] = [
    (DetectorParams, "detector", {}),
    (GateParams, "motion", {}),
    (SamplerParams, "motion", {}),
    (ReaderOptions, "capture", {
        "fps_limit": ("cameras", "fps_limit"),
        "loop": ("cameras", "loop"),
    }),
    (RecorderOptions, "recording", {
        "open_timeout_s": ("capture", "open_timeout_s"),
        "backoff_initial_s": ("capture", "backoff_initial_s"),
        "backoff_max_s": ("capture", "backoff_max_s"),
    }),
    (AlertPolicy, "alerts", {}),
    (ImageOptions, "broker", {}),
    (FramesLayout, "broker", {"max_age_s": ("scoring", "max_frame_age_s")}),
    (ScoresLayout, "broker", {
        "max_age_s": ("broker", "scores_max_age_s"),
        "ack_wait_s": None,
        "max_ack_pending": None,
    }),
]  # fmt: skip


@pytest.mark.parametrize(
    ("params", "section", "renamed"), PARITY, ids=lambda p: getattr(p, "__name__", "")
)
def test_every_stage_parameter_defaults_to_its_setting(
    params: type, section: str, renamed: dict[str, tuple[str, str] | None]
) -> None:
    """One source of defaults: the settings (before, the frames stream's max_age_s was 5 s
    while scoring.max_frame_age_s, which it mirrors, was 10 s)."""
    models = {name: info.annotation for name, info in Settings.model_fields.items()}
    models["cameras"] = CameraSettings
    checked = 0
    for f in dataclasses.fields(params):
        setting = renamed.get(f.name, (section, f.name))
        if f.default is dataclasses.MISSING or setting is None:
            continue
        where, name = setting
        model = models[where]
        assert isinstance(model, type) and issubclass(model, BaseModel)
        if name not in model.model_fields:
            continue  # not a setting (a stream's name, a subject)
        assert f.default == model.model_fields[name].default, (
            f"{params.__name__}.{f.name} defaults to {f.default!r}, "
            f"{where}.{name} to {model.model_fields[name].default!r}"
        )
        checked += 1
    assert checked, f"{params.__name__}: no field matched a setting"
