from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from hazardwatch import __version__
from hazardwatch.cli import main

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed console script as a user would."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HAZARDWATCH_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "hazardwatch", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_help_lists_commands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("version", "migrate", "config"):
        assert command in result.stdout


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"hazardwatch {__version__}"


def test_config_check_bad_file_exits_2_without_traceback(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "cameras:\n  - name: gate\n    url: rtsp://admin:hunter2@cam/s\n    bogus_key: 1\n"
    )
    result = run_cli("config", "check", "--config", str(config))
    assert result.returncode == 2
    assert "cameras[0].bogus_key: unknown key 'bogus_key'" in result.stderr
    assert "allowed keys: name, url" in result.stderr
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_config_check_prints_effective_config_with_secrets_masked(tmp_path: Path) -> None:
    config = tmp_path / "ok.yaml"
    config.write_text(
        "cameras:\n  - name: gate\n    url: rtsp://admin:${CAM_PW}@cam/s\napi:\n  token: tok-123\n"
    )
    result = run_cli(
        "config",
        "check",
        "--config",
        str(config),
        env={"CAM_PW": "hunter2", "HAZARDWATCH_MOTION__THRESHOLD": "33"},
    )
    assert result.returncode == 0, result.stderr
    assert "rtsp://admin:***@cam/s" in result.stdout
    assert "threshold: 33" in result.stdout
    assert "hunter2" not in result.stdout and "tok-123" not in result.stdout


def test_config_check_fails_on_a_password_that_breaks_the_url_without_showing_it(
    tmp_path: Path,
) -> None:
    config = tmp_path / "pw.yaml"
    config.write_text("cameras:\n  - name: gate\n    url: rtsp://admin:${CAM_PW}@cam:554/s\n")
    result = run_cli("config", "check", "--config", str(config), env={"CAM_PW": "hun/ter2@x"})
    assert result.returncode == 2
    assert "cameras[gate].url" in result.stderr and "percent-encode" in result.stderr
    assert "rtsp://admin:***@cam:554/s" in result.stderr
    for part in ("hun", "ter2"):
        assert part not in result.stdout + result.stderr


def test_example_config_checks(tmp_path: Path) -> None:
    result = run_cli(
        "config",
        "check",
        "--config",
        str(REPO_ROOT / "config" / "hazardwatch.example.yaml"),
        env={"CAMERA_PASSWORD": "x"},
    )
    assert result.returncode == 0, result.stderr


def test_migrate_creates_sqlite_database_in_data_dir(tmp_path: Path) -> None:
    result = run_cli("migrate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "is at revision" in result.stdout and "(head)" in result.stdout
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'data' / 'hazardwatch.db'}")
    assert {"cameras", "events", "scores"} <= set(sa.inspect(engine).get_table_names())
    engine.dispose()


@pytest.mark.mysql
def test_migrate_with_database_url_on_mysql(mysql_url: str) -> None:
    result = run_cli("migrate", "--database-url", mysql_url)
    assert result.returncode == 0, result.stderr
    engine = sa.create_engine(mysql_url)
    assert "events" in sa.inspect(engine).get_table_names()
    engine.dispose()


def test_migrate_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli(
        "migrate",
        "--database-url",
        "mysql+pymysql://hw:sekrit@127.0.0.1:1/hazardwatch",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "is not reachable" in result.stderr
    assert "sekrit" not in result.stderr
    assert "Traceback" not in result.stderr


def test_motion_on_a_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    result = run_cli("motion", str(bad))
    assert result.returncode == 1
    assert "cannot open file source" in result.stderr
    assert "Traceback" not in result.stderr


def test_motion_with_unknown_camera_for_masks(tmp_path: Path) -> None:
    result = run_cli("motion", "clip.mp4", "--camera", "nope", cwd=tmp_path)
    assert result.returncode == 2
    assert "--camera 'nope' is not configured; cameras:" in result.stderr


def test_user_hash_password_reads_stdin_and_prints_a_hash_that_opens_with_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    from hazardwatch.api.accounts import verify_password

    monkeypatch.setattr("sys.stdin", io.StringIO("a long passphrase\n"))
    assert main(["user", "hash-password"]) == 0
    encoded = capsys.readouterr().out.strip()
    assert encoded.startswith("scrypt$") and verify_password("a long passphrase", encoded)
    assert "a long passphrase" not in encoded
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["user", "hash-password"]) == 2
    assert "at least 8 characters" in capsys.readouterr().err
