"""Benchmark: CLIP frames/s from 1080p BGR frames, the seed way against ours, in one run.

The model is the real ViT-B/32 architecture with RANDOM weights (no weights can be
downloaded here): the compute is the same as the trained model's, the scores mean
nothing, and nothing here measures detection quality.

- seed way: per frame, BGR → PIL → clip's own preprocess, then the full model forward
  `model(image, text)` with the whole prompt bank re-encoded, batch 1, fp32;
- ours: batched preprocessing from numpy (no PIL), cached text embeddings, image encoder
  only, bf16 autocast on CPU (fp16 on CUDA), batch size --batch.

    python bench/clip_throughput.py [--frames 64] [--batch 32] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from typing import Any

import numpy as np

warnings.filterwarnings("ignore")  # clip imports pkg_resources

import torch  # noqa: E402

from hazardwatch.scoring.bank import load_bank  # noqa: E402
from hazardwatch.scoring.model import ClipEncoder, resolve_precision  # noqa: E402
from hazardwatch.scoring.preprocess import preprocess_batch  # noqa: E402
from hazardwatch.scoring.worker import TextIndex  # noqa: E402

VIT_B_32 = {
    "embed_dim": 512,
    "image_resolution": 224,
    "vision_layers": 12,
    "vision_width": 768,
    "vision_patch_size": 32,
    "context_length": 77,
    "vocab_size": 49408,
    "transformer_width": 512,
    "transformer_heads": 8,
    "transformer_layers": 12,
}


def random_vit_b_32() -> Any:
    from clip.model import CLIP

    torch.manual_seed(0)
    return CLIP(**VIT_B_32).eval()


def frames_1080p(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (1080, 1920, 3), dtype=np.uint8)
    return [np.roll(base, 7 * i, axis=1) for i in range(count)]


def seed_way(model: Any, frames: list[np.ndarray], prompts: list[str], device: str) -> float:
    import clip
    from clip.clip import _transform
    from PIL import Image

    preprocess = _transform(model.visual.input_resolution)
    model = model.float().to(device)
    started = time.perf_counter()
    with torch.no_grad():
        for frame in frames:
            image = preprocess(Image.fromarray(frame[:, :, ::-1])).unsqueeze(0).to(device)
            text = clip.tokenize(prompts).to(device)
            logits, _ = model(image, text)
            logits.softmax(dim=-1).cpu().numpy()
    return len(frames) / (time.perf_counter() - started)


def ours(
    model: Any, frames: list[np.ndarray], batch: int, device: str, precision: str
) -> tuple[float, float]:
    """(end-to-end frames/s from 1080p BGR, image-encoder-only frames/s)."""
    resolved = resolve_precision(precision, device)
    model = (model.half() if resolved == "fp16" else model.float()).to(device)
    encoder = ClipEncoder("ViT-B/32 (random weights)", model, device, resolved, 224, 100.0)
    index = TextIndex.build(load_bank(None), encoder)  # once, as the worker does
    encoder.encode_images(preprocess_batch(frames[:batch], 224))  # warm-up
    started = time.perf_counter()
    model_s = 0.0
    for i in range(0, len(frames), batch):
        pixels = preprocess_batch(frames[i : i + batch], 224)
        t0 = time.perf_counter()
        embeddings = encoder.encode_images(pixels)
        model_s += time.perf_counter() - t0
        index.score(embeddings, encoder.logit_scale)
    if device == "cuda":
        torch.cuda.synchronize()
    return len(frames) / (time.perf_counter() - started), len(frames) / model_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=64, help="frames for our way")
    parser.add_argument("--seed-frames", type=int, default=8, help="frames for the seed way")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--sweep", action="store_true", help="also sweep batch sizes (ours)")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    prompts = load_bank(None).prompts
    frames = frames_1080p(max(args.frames, args.seed_frames))
    seed_fps = seed_way(random_vit_b_32(), frames[: args.seed_frames], prompts, args.device)
    ours_fps, model_fps = ours(
        random_vit_b_32(), frames[: args.frames], args.batch, args.device, args.precision
    )
    result: dict[str, Any] = {
        "seed_way_fps": round(seed_fps, 2),
        "ours_fps": round(ours_fps, 2),
        "ours_model_only_fps": round(model_fps, 2),
        "ratio": round(ours_fps / seed_fps, 1),
        "weights": "random",
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "precision": resolve_precision(args.precision, args.device),
        "batch": args.batch,
        "threads": torch.get_num_threads(),
    }
    if args.sweep:
        result["sweep"] = {
            b: round(
                ours(random_vit_b_32(), frames[: args.frames], b, args.device, args.precision)[0], 2
            )
            for b in (1, 4, 8, 16, 32, 64)
            if b <= args.frames
        }
    if args.json:
        print(json.dumps(result))
        return 0
    print("CLIP ViT-B/32 architecture with RANDOM weights: speed only, no detection quality")
    print(
        f"device {result['device']}, ours in {result['precision']}, batch {args.batch}, "
        f"{result['threads']} threads, 1080p BGR input"
    )
    print(f"  seed way (PIL, full forward with text, batch 1, fp32): {seed_fps:7.2f} frames/s")
    print(f"  ours (numpy preprocess, cached text, batched):         {ours_fps:7.2f} frames/s")
    print(f"  ours, image encoder alone:                             {model_fps:7.2f} frames/s")
    print(f"  ratio: {ours_fps / seed_fps:.1f}×")
    for b, fps in result.get("sweep", {}).items():
        print(f"  batch {b:>3}: {fps:7.2f} frames/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
