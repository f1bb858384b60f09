from __future__ import annotations

import logging
import re

import pytest

from hazardwatch.redact import RedactingFilter, redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rtsp://admin:hunter2@10.0.0.5:554/s1", "rtsp://admin:***@10.0.0.5:554/s1"),
        ("rtsp://tokenonly@cam/s", "rtsp://***@cam/s"),
        ("rtsp://cam/s", "rtsp://cam/s"),
        ("sqlite:///data/hazardwatch.db", "sqlite:///data/hazardwatch.db"),
        ("http://cam/mjpg?user=a&password=pw", "http://cam/mjpg?user=a&password=***"),
        ("https://hooks/x?token=abc#f", "https://hooks/x?token=***#f"),
        ("/videos/clip.mp4", "/videos/clip.mp4"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


# Passwords with the characters that break URL parsing, as they arrive from ${ENV} values.
AWKWARD_PASSWORDS = ["a/b@c", "p@ss", "x#y?z", "co:lon", "sl/ash", "q'uote", "%2Fenc", "@@"]


@pytest.mark.parametrize("password", AWKWARD_PASSWORDS)
def test_a_password_that_breaks_the_url_is_still_masked_whole(password: str) -> None:
    from hazardwatch.capture.sources import SourceSpec
    from hazardwatch.errors import SourceError

    url = f"rtsp://admin:{password}@10.0.0.5:554/stream"
    secret_parts = [part for part in re.split(r"[/@#?:']", password) if len(part) >= 2]
    try:
        shown = SourceSpec.parse(url).display
    except SourceError as exc:
        shown = str(exc)
    for text in (redact_url(url), redact_text(f"cannot open '{url}': refused"), shown):
        assert "admin:***@10.0.0.5:554/stream" in text, text  # masked whole, host intact
        for part in secret_parts:
            assert part not in text.replace("admin", "").replace("stream", ""), text


def test_redact_text_finds_urls_inside_sentences() -> None:
    text = "open rtsp://a:pw1@h/x failed; db mysql+pymysql://r:pw2@db/hw down"
    cleaned = redact_text(text)
    assert "pw1" not in cleaned and "pw2" not in cleaned
    assert "rtsp://a:***@h/x" in cleaned


def test_logging_filter_redacts_messages_args_and_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("hazardwatch.test.redact")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info("opening %s", "rtsp://admin:hunter2@cam/s")
        try:
            raise ConnectionError("cannot reach rtsp://admin:hunter2@cam/s")
        except ConnectionError:
            logger.exception("reader failed")
    assert caplog.records
    rendered = caplog.text + "".join(r.exc_text or "" for r in caplog.records)
    assert "hunter2" not in rendered
    assert "rtsp://admin:***@cam/s" in rendered


def _emit(log_format: str, message: str, *args: object) -> str:
    import io
    import logging

    from hazardwatch.redact import configure_logging

    configure_logging("INFO", log_format)
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "_hazardwatch", False))
    stream = io.StringIO()
    handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        logging.getLogger("hazardwatch.test").warning(message, *args)
    finally:
        configure_logging("INFO")  # back to the default handler on stderr
    return stream.getvalue()


def test_text_log_lines_carry_utc_iso_times() -> None:
    import re

    line = _emit("text", "camera %s down", "gate")
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARNING hazardwatch.test: ", line)
    assert line.rstrip().endswith("camera gate down")


def test_json_log_lines_are_objects_and_still_redacted() -> None:
    import json

    line = _emit("json", "cannot open %s", "rtsp://admin:hunter2@10.0.0.5/stream")
    entry = json.loads(line)
    assert set(entry) == {"ts", "level", "logger", "message"}
    assert entry["level"] == "WARNING" and entry["ts"].endswith("Z")
    assert "hunter2" not in line and "admin:***@" in entry["message"]
