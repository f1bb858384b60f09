from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from hazardwatch.errors import ModelLoadError
from hazardwatch.scoring.model import load_clip, resolve_precision


@pytest.fixture
def tiny_weights(tiny_clip_weights: Path) -> Path:
    return tiny_clip_weights


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_state_dict_loads_through_the_real_loader(tiny_weights: Path, precision: str) -> None:
    encoder = load_clip(str(tiny_weights), device="cpu", precision=precision)
    assert (encoder.resolution, encoder.precision, encoder.device) == (32, precision, "cpu")
    text = encoder.encode_text(["a car crash", "an empty road"])
    images = encoder.encode_images(
        np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    )
    assert text.shape == (2, 32) and images.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, rtol=1e-3)
    assert encoder.logit_scale == pytest.approx(1 / 0.07, rel=1e-3)


def test_torchscript_archive_loads(tiny_weights: Path, tmp_path: Path) -> None:
    """OpenAI's own files are TorchScript archives; the loader reads those too."""
    from clip import tokenize
    from clip.model import build_model

    model = build_model(dict(torch.load(tiny_weights, weights_only=True))).float().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, (torch.zeros(1, 3, 32, 32), tokenize(["a road"])))
    archive = tmp_path / "archive.pt"
    traced.save(str(archive))
    encoder = load_clip(str(archive), device="cpu", precision="fp32")
    assert encoder.resolution == 32
    expected = model.encode_text(tokenize(["a road"])).detach()
    expected = (expected / expected.norm(dim=-1, keepdim=True)).numpy()
    np.testing.assert_allclose(encoder.encode_text(["a road"]), expected, atol=1e-4)


def test_missing_weights_name_the_file_and_the_option(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as caught:
        load_clip("ViT-B/32", device="cpu", download_dir=tmp_path)
    message = str(caught.value)
    assert str(tmp_path / "ViT-B-32.pt") in message
    assert "scoring.model" in message and "--model" in message


def test_unknown_name_lists_models() -> None:
    with pytest.raises(ModelLoadError, match="ViT-B/32"):
        load_clip("ViT-Z/99", device="cpu")


def test_garbage_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not weights")
    with pytest.raises(ModelLoadError, match="cannot load CLIP weights"):
        load_clip(str(bad), device="cpu")


def test_precision_rules() -> None:
    assert resolve_precision("auto", "cuda") == "fp16"
    assert resolve_precision("auto", "cpu") in ("bf16", "fp32")
    with pytest.raises(ModelLoadError, match="fp16 is for CUDA"):
        resolve_precision("fp16", "cpu")
