"""Round trips of the records that cross stage boundaries, and what a bad message gets."""

from __future__ import annotations

import dataclasses
import json
import struct
from datetime import UTC, datetime

import cv2
import numpy as np
import pytest

from hazardwatch.handoff.codec import (
    CodecError,
    decode_gated,
    decode_scored,
    encode_gated,
    encode_scored,
    pack,
    unpack,
)
from hazardwatch.images import ImageError, ImageOptions, decode_at_least, decode_jpeg, jpeg_size
from hazardwatch.records import (
    EventRecord,
    EventUpdate,
    Frame,
    GatedFrame,
    MotionResult,
    ScoredFrame,
    Weather,
)
from hazardwatch.scoring.bank import load_bank

T = datetime(2026, 11, 22, 18, 30, 1, 250000, tzinfo=UTC)
BANK = load_bank(None)


def image(width: int = 320, height: int = 240) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    out = np.stack([(xx * 255 // width), (yy * 255 // height), np.full_like(xx, 90)], axis=2)
    return out.astype(np.uint8)


def gated() -> GatedFrame:
    frame = Frame("gate-1", 42, 1_795_372_201.125, T, image())
    return GatedFrame(frame, MotionResult(True, 0.125, (10, 20, 60, 80), 0.25, False), "motion", 7)


def close_image(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and float(np.abs(a.astype(int) - b.astype(int)).mean()) < 3.0


def test_a_gated_frame_round_trips() -> None:
    original = dataclasses.replace(gated(), handoff_seq=12)
    back = decode_gated(encode_gated(original))
    assert back.handoff_seq == 12
    f = back.frame
    assert (f.camera, f.seq, f.received_at, f.captured_at) == ("gate-1", 42, 1_795_372_201.125, T)
    assert (back.motion, back.reason, back.snippet) == (original.motion, "motion", 7)
    assert close_image(back.frame.image, original.frame.image)  # JPEG: close, not equal


def test_frames_are_scaled_to_the_wire_width() -> None:
    big = dataclasses.replace(
        gated(), frame=dataclasses.replace(gated().frame, pixels=image(1920, 1080))
    )
    back = decode_gated(encode_gated(big, ImageOptions(jpeg_quality=70, max_width=640)))
    assert back.frame.image.shape == (360, 640, 3)
    # The motion box is in the pixels of the image that travels: a third of (10, 20, 60, 80).
    assert back.motion.box == (3, 7, 20, 27)
    assert back.motion.score == gated().motion.score


def test_a_received_frame_is_decoded_only_where_its_pixels_are_used() -> None:
    back = decode_gated(encode_gated(gated()))
    assert not back.frame.decoded
    first = back.frame.image
    assert back.frame.decoded and back.frame.image is first  # decoded once, then kept


def test_the_wire_image_is_read_at_the_size_the_model_needs() -> None:
    """1280×720 for a 224-pixel model: decoded at half size, as the preprocessing's first
    halving would have made it; 320×240 (too small to shrink) and PNG in full."""
    big = dataclasses.replace(
        gated(), frame=dataclasses.replace(gated().frame, pixels=image(1280, 720))
    )
    data = decode_gated(encode_gated(big)).wire_image
    assert data is not None and jpeg_size(data) == (1280, 720)
    reduced, scale = decode_at_least(data, 224)
    assert reduced.shape == (360, 640, 3) and scale == 0.5
    halved = cv2.resize(image(1280, 720), (640, 360), interpolation=cv2.INTER_AREA)
    assert close_image(reduced, halved)
    assert decode_at_least(data, 400)[0].shape == (720, 1280, 3)
    assert decode_at_least(data, 90)[1] == 0.125
    small = encode_gated(gated())
    assert decode_at_least(decode_gated(small).wire_image or b"", 224)[1] == 1.0
    png = decode_gated(encode_gated(big, ImageOptions(image_format="png"))).wire_image or b""
    assert jpeg_size(png) is None
    assert np.array_equal(decode_at_least(png, 224)[0], image(1280, 720))
    assert jpeg_size(b"\xff\xd8\xff\xe0\x00") is None  # a header cut short


@pytest.mark.parametrize(
    ("min_side", "flag"),
    [
        (720, cv2.IMREAD_COLOR),
        (224, cv2.IMREAD_REDUCED_COLOR_2),
        (150, cv2.IMREAD_REDUCED_COLOR_4),
        (90, cv2.IMREAD_REDUCED_COLOR_8),
    ],
)
def test_wire_jpegs_decode_to_the_pixels_opencv_reads(min_side: int, flag: int) -> None:
    """The decoder changed from OpenCV's to simplejpeg's for speed; both are libjpeg-turbo
    with the same settings, so every pixel is the same, at full size and scaled."""
    noisy = np.random.default_rng(5).integers(0, 256, (720, 1280, 3), np.uint8)
    scene = cv2.GaussianBlur(noisy, (9, 9), 0)  # texture, so every DCT coefficient counts
    _, jpeg = cv2.imencode(".jpg", scene, [cv2.IMWRITE_JPEG_QUALITY, 85])
    data = jpeg.tobytes()
    expected = cv2.imdecode(jpeg, flag)
    assert np.array_equal(decode_at_least(data, min_side)[0], expected)
    if flag == cv2.IMREAD_COLOR:
        assert np.array_equal(decode_jpeg(data), expected)


def test_a_damaged_jpeg_is_a_codec_error_in_libjpegs_words() -> None:
    _, jpeg = cv2.imencode(".jpg", image(320, 240))
    data = jpeg.tobytes()
    with pytest.raises(ImageError, match=r"not a JPEG .*: .+"):
        decode_jpeg(data[: len(data) // 2])
    with pytest.raises(ImageError, match="not a JPEG"):
        decode_at_least(data[:40], 90)


def test_a_payload_that_is_no_image_is_refused_before_anything_decodes_it() -> None:
    _, header, _ = unpack(encode_gated(gated()))
    with pytest.raises(CodecError, match="not a JPEG"):
        decode_gated(pack("gated", header, b"GIF89a not a frame"))
    cut = pack("gated", header, b"\xff\xd8\xff\xe0 and then nothing")
    frame = decode_gated(cut).frame  # starts like a JPEG: found out at first use
    with pytest.raises(ImageError, match="not a JPEG"):
        _ = frame.image


def test_png_frames_are_exact() -> None:
    original = gated()
    back = decode_gated(encode_gated(original, ImageOptions(image_format="png")))
    assert np.array_equal(back.frame.image, original.frame.image)


def test_the_next_hop_passes_the_wire_image_on_as_it_came() -> None:
    """The worker publishes the JPEG it received, not a second generation of it."""
    data = encode_gated(gated())
    received = decode_gated(data)
    assert received.wire_image is not None and received.wire_image in data
    probs = {name: 1 / len(BANK.class_names) for name in BANK.class_names}
    sims = np.zeros(len(BANK.prompts), np.float32)
    scored = encode_scored(ScoredFrame(received, probs, sims, BANK))
    assert received.wire_image in scored
    back = decode_scored(scored, lambda v: BANK)
    assert np.array_equal(back.gated.frame.image, received.frame.image)  # no generation lost


def test_a_scored_frame_round_trips_with_its_bank_version() -> None:
    embedding = np.linspace(-1, 1, 512).astype(np.float32)
    sims = np.linspace(0, 0.3, len(BANK.prompts)).astype(np.float32)
    probs = {name: 1 / len(BANK.class_names) for name in BANK.class_names}
    original = ScoredFrame(gated(), probs, sims, BANK, embedding)
    asked: list[str] = []

    def bank_of(version: str) -> object:
        asked.append(version)
        return BANK

    back = decode_scored(encode_scored(original), bank_of)  # type: ignore[arg-type]
    assert asked == [BANK.version] and back.bank is BANK
    assert back.probabilities == probs
    assert back.embedding is not None and np.allclose(back.embedding, embedding, atol=1e-3)
    assert np.allclose(back.prompt_similarities, sims, atol=1e-3)
    assert back.gated.frame.captured_at == T and back.gated.motion == original.gated.motion
    no_embedding = dataclasses.replace(original, embedding=None)
    back = decode_scored(encode_scored(no_embedding), lambda v: BANK)
    assert back.embedding is None


def test_an_unknown_bank_version_is_a_codec_error() -> None:
    scored = ScoredFrame(gated(), {}, np.zeros(0, np.float32), BANK)
    with pytest.raises(CodecError, match="unknown prompt bank version"):
        decode_scored(encode_scored(scored), {}.__getitem__)  # type: ignore[arg-type]


def test_an_event_record_round_trips_every_field_as_json() -> None:
    """The spool's format (storage/spool.py): JSON text, every field back as it was."""
    record = EventRecord(
        "8c0c5b2e-1", "gate-1", "traffic_accident", "critical", "closed", T, T, 0.93, 0.81,
        ended_at=T, snapshot_path="gate-1/8c0c5b2e-1.jpg", model_name="ViT-B/32",
        prompt_bank_version=BANK.version, revision=4, peak_embedding="AAAA",
        verdict="confirmed", verdict_note="seen on site", verdict_at=T,
        weather=Weather(61, "slight rain", 3.4, 0.6, 17.3, None, T),
    )  # fmt: skip
    assert EventRecord.from_json(json.loads(json.dumps(record.to_json()))) == record
    bare = dataclasses.replace(record, ended_at=None, weather=None, verdict_at=None)
    assert EventRecord.from_json(json.loads(json.dumps(bare.to_json()))) == bare


def test_an_event_update_of_an_unknown_kind_is_refused() -> None:
    """One vocabulary of event changes (records.EventKind): an alert's word is not one."""
    record = EventRecord("u", "gate-1", "fire_smoke", "critical", "open", T, T, 0.9, 0.8)
    with pytest.raises(ValueError, match="'new' is not one of started, updated, ended"):
        EventUpdate("new", record, None, None)  # type: ignore[arg-type]


def envelope(
    version: int = 1, kind: int = 1, header: bytes = b"{}", length: int | None = None
) -> bytes:
    size = len(header) if length is None else length
    return struct.pack(">2sBBI", b"HW", version, kind, size) + header


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", "too short"),
        (b'{"camera": "gate"}', "not a hazardwatch message"),
        (envelope(version=2), "message version 2; this build reads version 1"),
        (envelope(kind=9), "unknown message kind 9"),
        (envelope(length=999), "runs past"),
        (envelope(header=b"{not json"), "header is not JSON"),
        (envelope(header=b"[1, 2]"), "not a JSON object"),
        (envelope(kind=2, header=b"{}"), "expected a gated message, got scored"),
        (envelope(kind=3), "unknown message kind 3"),  # retired: event updates
        (envelope(header=b'{"camera": "x"}'), "bad frame header: KeyError"),
    ],
)
def test_bad_messages_are_codec_errors_that_say_why(data: bytes, error: str) -> None:
    with pytest.raises(CodecError, match=error):
        decode_gated(data)


def test_a_payload_that_is_not_a_jpeg_is_refused() -> None:
    good_kind, header, _ = unpack(encode_gated(gated()))
    with pytest.raises(CodecError, match="not a JPEG"):
        decode_gated(pack(good_kind, header, b"\x00\x01 not an image"))
    header["motion"]["box"] = "wide"
    _, jpeg = cv2.imencode(".jpg", image())
    with pytest.raises(CodecError, match="bad frame header"):
        decode_gated(pack("gated", json.loads(json.dumps(header)), jpeg.tobytes()))
