from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hazardwatch.scoring.model import ClipEncoder, load_clip
from hazardwatch.scoring.vision import FastVisionTransformer, packed_linear_supported

PACKED = [False, True] if packed_linear_supported(torch.bfloat16) else [False]


def small_clip(**vision: Any) -> Any:
    """A random CLIP with several heads and layers (the session's tiny one has one of each)."""
    from clip.model import CLIP

    torch.manual_seed(1)
    params: dict[str, Any] = {
        "embed_dim": 32,
        "image_resolution": 64,
        "vision_layers": 2,
        "vision_width": 256,  # 4 heads of 64
        "vision_patch_size": 16,
        "context_length": 77,
        "vocab_size": 49408,
        "transformer_width": 64,
        "transformer_heads": 1,
        "transformer_layers": 1,
    }
    return CLIP(**(params | vision)).float().eval()


def cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.float(), b.float())


@pytest.mark.parametrize("packed", PACKED)
@pytest.mark.parametrize("batch", [1, 3, 40])  # 40: more than the weight layout's hint
@pytest.mark.parametrize("resolution", [64, 160])  # 17 tokens: explicit attention; 101: SDPA
def test_fp32_equals_clips_own_forward(packed: bool, batch: int, resolution: int) -> None:
    model = small_clip(image_resolution=resolution)
    vision = FastVisionTransformer.from_clip(model.visual, torch.float32, 4, packed)
    assert vision is not None
    explicit = [block.explicit_attention for block in vision.blocks]
    assert explicit == [resolution == 64] * 2
    pixels = torch.randn(batch, 3, resolution, resolution)
    with torch.inference_mode():
        expected, got = model.visual(pixels), vision(pixels)
    assert got.shape == expected.shape == (batch, 32)
    torch.testing.assert_close(got, expected, atol=2e-4, rtol=2e-4)


@pytest.mark.parametrize("packed", PACKED)
@pytest.mark.parametrize("resolution", [64, 160])
def test_bf16_agrees_with_clips_fp32_forward(packed: bool, resolution: int) -> None:
    model = small_clip(image_resolution=resolution)
    vision = FastVisionTransformer.from_clip(model.visual, torch.bfloat16, 16, packed)
    assert vision is not None and vision.kernels == ("onednn-packed" if packed else "plain")
    pixels = torch.randn(5, 3, resolution, resolution)
    with torch.inference_mode():
        agreement = cosines(vision(pixels), model.visual(pixels))
    assert agreement.min() > 0.999, agreement


def test_quick_gelu_is_folded_not_dropped() -> None:
    """The MLP's activation matters: the same weights with plain SiLU would disagree."""
    model = small_clip()
    vision = FastVisionTransformer.from_clip(model.visual, torch.float32, 4, False)
    assert vision is not None
    for block in model.visual.transformer.resblocks:
        block.mlp.gelu = torch.nn.SiLU()
    pixels = torch.randn(4, 3, 64, 64)
    with torch.inference_mode():
        assert not torch.allclose(vision(pixels), model.visual(pixels), atol=1e-3)


def test_resnet_encoders_keep_clips_forward() -> None:
    model = small_clip(vision_layers=(1, 1, 1, 1), vision_width=16)
    assert FastVisionTransformer.from_clip(model.visual, torch.bfloat16) is None
    encoder = ClipEncoder.from_model(model, "tiny-rn", "cpu", "bf16")
    assert encoder.image_kernels == "clip"
    images = encoder.encode_images(
        np.random.default_rng(0).standard_normal((2, 3, 64, 64), np.float32)
    )
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, rtol=1e-3)


def test_wrong_resolution_names_the_one_it_takes() -> None:
    vision = FastVisionTransformer.from_clip(small_clip().visual, torch.float32)
    assert vision is not None
    with pytest.raises(ValueError, match="takes 64×64"):
        vision(torch.zeros(1, 3, 32, 32))


def test_cpus_with_avx512_bf16_get_the_packed_path() -> None:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if "avx512_bf16" not in flags:
        pytest.skip("this CPU has no avx512_bf16; the plain path serves it")
    assert packed_linear_supported(torch.bfloat16)
    assert packed_linear_supported(torch.float32)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_loader_uses_the_fast_path_and_agrees_with_clips(
    tiny_clip_weights: Path, precision: str
) -> None:
    fast = load_clip(str(tiny_clip_weights), device="cpu", precision=precision)
    slow = load_clip(str(tiny_clip_weights), device="cpu", precision=precision, fast_path=False)
    assert fast.image_kernels in ("onednn-packed", "plain") and slow.image_kernels == "clip"
    pixels = np.random.default_rng(0).standard_normal((6, 3, 32, 32)).astype(np.float32)
    agreement = np.sum(fast.encode_images(pixels) * slow.encode_images(pixels), axis=1)
    assert agreement.min() > (0.9999 if precision == "fp32" else 0.995), agreement


def test_a_fast_path_that_disagrees_falls_back_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def wrong(self: FastVisionTransformer, pixels: torch.Tensor) -> torch.Tensor:
        return torch.ones(pixels.shape[0], 32)

    monkeypatch.setattr(FastVisionTransformer, "__call__", wrong)
    with caplog.at_level(logging.WARNING, logger="hazardwatch.scoring.model"):
        encoder = ClipEncoder.from_model(small_clip(), "small", "cpu", "bf16")
    assert encoder.image_kernels == "clip"
    assert "disagrees with clip's forward" in caplog.text
    images = encoder.encode_images(np.zeros((1, 3, 64, 64), np.float32))
    assert not np.allclose(images, np.ones(32) / np.sqrt(32), atol=1e-3)


def test_a_fast_path_that_fails_falls_back(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: FastVisionTransformer, pixels: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("no kernel for this CPU")

    monkeypatch.setattr(FastVisionTransformer, "__call__", broken)
    with caplog.at_level(logging.WARNING, logger="hazardwatch.scoring.model"):
        encoder = ClipEncoder.from_model(small_clip(), "small", "cpu", "fp32")
    assert encoder.image_kernels == "clip" and "no kernel for this CPU" in caplog.text
