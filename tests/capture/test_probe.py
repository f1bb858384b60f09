"""`hazardwatch cameras --probe` against the real RTSP server: open, Basic and Digest
authentication, wrong passwords, unknown paths, nothing listening; and a file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hazardwatch.capture.probe import describe, probe
from hazardwatch.capture.sources import SourceSpec
from hazardwatch.cli import main
from tests.conftest import RtspServer, free_port

pytestmark = pytest.mark.rtsp


@pytest.fixture
def auth_server(rtsp_server: RtspServer, request: pytest.FixtureRequest) -> Iterator[RtspServer]:
    """A second server of the same clip that wants user `op`, password `s3 cr/t`."""
    method = ["--digest"] if request.param == "digest" else []
    server = RtspServer(rtsp_server.clip, free_port(), ["--user", "op", "--password", "s3 cr/t",
                                                         *method])  # fmt: skip
    server.start()
    yield server
    server.stop()


def with_login(url: str, password: str) -> str:
    return url.replace("rtsp://", f"rtsp://op:{password}@")


def test_an_open_stream_reports_codec_resolution_and_fps(rtsp_server: RtspServer) -> None:
    result = probe(SourceSpec.parse(rtsp_server.url), 10)
    assert result.ok, result.detail
    assert result.codec == "h264" and result.width and result.height
    assert result.fps is not None and result.fps > 0
    assert result.detail.startswith(f"h264, {result.width}x{result.height}, ")


@pytest.mark.parametrize("auth_server", ["basic", "digest"], indirect=True)
def test_authentication_is_named_as_such(auth_server: RtspServer) -> None:
    good = probe(SourceSpec.parse(with_login(auth_server.url, "s3%20cr%2Ft")), 10)
    assert good.ok, good.detail
    wrong = probe(SourceSpec.parse(with_login(auth_server.url, "guess")), 10)
    assert not wrong.ok and wrong.detail.startswith("authentication failed")
    assert "guess" not in wrong.detail
    missing = describe(auth_server.url, 10)
    assert not missing.ok and missing.detail.startswith("authentication required")


def test_an_unknown_path_and_a_dead_port_read_differently(rtsp_server: RtspServer) -> None:
    path = describe(rtsp_server.url.replace("/cam", "/nope"), 5)
    assert not path.ok and "stream path '/nope' not found" in path.detail
    dead = describe(f"rtsp://127.0.0.1:{free_port()}/cam", 5)
    assert not dead.ok and dead.detail.startswith("connection refused")


def test_a_file_is_probed_with_opencv(rtsp_clip: Path) -> None:
    result = probe(SourceSpec.parse(str(rtsp_clip)), 10)
    assert result.ok and result.codec in ("h264", "avc1") and result.width


def test_cameras_command_masks_urls_and_exits_1_on_a_failed_probe(
    rtsp_server: RtspServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "hw.yaml"
    config.write_text(
        "cameras:\n"
        f"  - {{name: gate, url: '{with_login(rtsp_server.url, 'hunter2')}'}}\n"
        f"  - {{name: dead, url: 'rtsp://op:hunter2@127.0.0.1:{free_port()}/cam'}}\n"
        "  - {name: broken, url: 'rtsp://op:a/b@host/cam'}\n"
    )
    assert main(["cameras", "--config", str(config)]) == 0
    listed = capsys.readouterr().out
    assert "gate  rtsp  rtsp://op:***@127.0.0.1" in listed and "hunter2" not in listed
    assert main(["cameras", "--config", str(config), "--probe", "--timeout", "5"]) == 1
    out = capsys.readouterr().out
    assert "hunter2" not in out
    lines = out.splitlines()
    assert lines[1].startswith("  probe: ok: h264, ")  # gate: no auth needed, still fine
    assert lines[3].startswith("  probe: FAILED: connection refused")
    assert lines[4].startswith("broken  invalid") and "FAILED" in lines[5]


def test_a_camera_that_does_not_open_says_what_the_probe_says(rtsp_server: RtspServer) -> None:
    """Issue 29.7: `run` worded a wrong path as "check the host, port, path and
    credentials"; its last_error now names the path, as `cameras --probe` does."""
    from hazardwatch.capture.sources import open_capture
    from hazardwatch.errors import SourceError

    with pytest.raises(SourceError) as caught:
        open_capture(SourceSpec.parse(rtsp_server.url.replace("/cam", "/nosuch")), 5, 5)
    assert "stream path '/nosuch' not found on 127.0.0.1:" in str(caught.value)
    dead = SourceSpec.parse(f"rtsp://op:hunter2@127.0.0.1:{free_port()}/cam")
    with pytest.raises(SourceError) as caught:
        open_capture(dead, 5, 5)
    assert "connection refused by 127.0.0.1:" in str(caught.value)
    assert "hunter2" not in str(caught.value)
