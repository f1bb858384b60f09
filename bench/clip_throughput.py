"""Benchmark: CLIP frames/s from 1080p BGR frames, the seed way against ours, in one run.

The model is the real ViT-B/32 architecture with RANDOM weights (no weights can be
downloaded here): the compute is the same as the trained model's, the scores mean
nothing, and nothing here measures detection quality.

- seed way: per frame, BGR → PIL → clip's own preprocess, then the full model forward
  `model(image, text)` with the whole prompt bank re-encoded, batch 1, fp32;
- ours: what the service runs: ClipEncoder.from_model (the loader's own constructor) and
  ScoringWorker.score on gated frames (numpy preprocessing per frame, no PIL, cached text
  embeddings, image encoder only, class probabilities and prompt similarities);
  on the CPU the batch-first ViT path with oneDNN-prepacked bf16 weights, on CUDA clip's
  forward in fp16; batch size --batch (the service's default scoring.batch_size);
- clip forward: ours with scoring.cpu_fast_path off, i.e. clip's own image forward under
  bf16 autocast (what the service ran before the fast path), to show what that path adds.

Ours and clip forward alternate for --rounds rounds and the medians are reported, so a
noisy machine slows both alike.

    python bench/clip_throughput.py [--frames 64] [--batch 16] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from datetime import UTC, datetime
from typing import Any

import numpy as np

warnings.filterwarnings("ignore")  # clip imports pkg_resources

import torch  # noqa: E402

from hazardwatch.handoff.queue import LocalQueue  # noqa: E402
from hazardwatch.records import Frame, GatedFrame, MotionResult  # noqa: E402
from hazardwatch.scoring.bank import load_bank  # noqa: E402
from hazardwatch.scoring.model import ClipEncoder, resolve_precision  # noqa: E402
from hazardwatch.scoring.preprocess import preprocess_batch  # noqa: E402
from hazardwatch.scoring.worker import ScoringWorker  # noqa: E402

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


def gated(frames: list[np.ndarray]) -> list[GatedFrame]:
    """The frames as the motion gate hands them to the worker."""
    now, motion = datetime.now(UTC), MotionResult(True, 0.1, (800, 400, 320, 240))
    return [
        GatedFrame(Frame("bench", i, time.monotonic(), now, image), motion, "motion", 1)
        for i, image in enumerate(frames)
    ]


def build_worker(
    model: Any, frames: list[np.ndarray], batch: int, device: str, precision: str, fast_path: bool
) -> ScoringWorker:
    """The service's encoder (the loader's constructor) and worker, warmed up on one batch.

    The worker's thread is never started: the bench calls its score() directly.
    """
    resolved = resolve_precision(precision, device)
    encoder = ClipEncoder.from_model(
        model, "ViT-B/32 (random weights)", device, resolved, batch, fast_path
    )
    worker = ScoringWorker(encoder, load_bank(None), LocalQueue(1), lambda _: None)
    worker.score(gated(frames[:batch]))
    return worker


def run_ours(worker: ScoringWorker, frames: list[np.ndarray], batch: int) -> tuple[float, float]:
    """One pass through ScoringWorker.score (per-frame preprocessing, encode, scores),
    then the image encoder alone on the same frames, preprocessed beforehand."""
    items = gated(frames)
    started = time.perf_counter()
    for i in range(0, len(items), batch):
        worker.score(items[i : i + batch])
    if worker.encoder.device == "cuda":
        torch.cuda.synchronize()
    end_to_end = len(frames) / (time.perf_counter() - started)
    pixels = [preprocess_batch(frames[i : i + batch], 224) for i in range(0, len(frames), batch)]
    started = time.perf_counter()
    for chunk in pixels:
        worker.encoder.encode_images(chunk)
    if worker.encoder.device == "cuda":
        torch.cuda.synchronize()
    return end_to_end, len(frames) / (time.perf_counter() - started)


def alternate(
    frames: list[np.ndarray], batch: int, device: str, precision: str, rounds: int
) -> dict[str, Any]:
    """Ours and clip's forward in alternating rounds; medians of each."""
    runs = {}
    for fast_path in (True, False):
        worker = build_worker(random_vit_b_32(), frames, batch, device, precision, fast_path)
        runs[fast_path] = (worker, [], [])
    for _ in range(rounds):
        for worker, fps, model_fps in runs.values():
            end_to_end, model_only = run_ours(worker, frames, batch)
            fps.append(end_to_end)
            model_fps.append(model_only)
    fast, clip_forward = runs[True], runs[False]
    encoder = fast[0].encoder
    assert isinstance(encoder, ClipEncoder)
    return {
        "image_kernels": encoder.image_kernels,
        "ours_fps": statistics.median(fast[1]),
        "ours_model_only_fps": statistics.median(fast[2]),
        "clip_forward_fps": statistics.median(clip_forward[1]),
        "clip_forward_model_only_fps": statistics.median(clip_forward[2]),
        "ours_fps_range": [min(fast[1]), max(fast[1])],
        "clip_forward_fps_range": [min(clip_forward[1]), max(clip_forward[1])],
    }


def sweep(frames: list[np.ndarray], device: str, precision: str) -> dict[int, float]:
    """Ours (end to end) at several batch sizes, one pass each."""
    out = {}
    for batch in (1, 4, 8, 16, 32, 64):
        if batch <= len(frames):
            worker = build_worker(random_vit_b_32(), frames, batch, device, precision, True)
            out[batch] = round(run_ours(worker, frames, batch)[0], 2)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=64, help="frames for our way")
    parser.add_argument("--seed-frames", type=int, default=8, help="frames for the seed way")
    parser.add_argument("--batch", type=int, default=16, help="the service's default")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (medians)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--sweep", action="store_true", help="also sweep batch sizes (ours)")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    prompts = load_bank(None).prompts
    frames = frames_1080p(max(args.frames, args.seed_frames))
    seed_fps = seed_way(random_vit_b_32(), frames[: args.seed_frames], prompts, args.device)
    measured = alternate(
        frames[: args.frames], args.batch, args.device, args.precision, max(1, args.rounds)
    )
    ours_fps = measured["ours_fps"]
    result: dict[str, Any] = {
        "seed_way_fps": round(seed_fps, 2),
        "ours_fps": round(ours_fps, 2),
        "ours_model_only_fps": round(measured["ours_model_only_fps"], 2),
        "ratio": round(ours_fps / seed_fps, 1),
        "clip_forward_fps": round(measured["clip_forward_fps"], 2),
        "clip_forward_model_only_fps": round(measured["clip_forward_model_only_fps"], 2),
        "fast_path_speedup": round(ours_fps / measured["clip_forward_fps"], 2),
        "ours_fps_range": [round(v, 2) for v in measured["ours_fps_range"]],
        "clip_forward_fps_range": [round(v, 2) for v in measured["clip_forward_fps_range"]],
        "weights": "random",
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "precision": resolve_precision(args.precision, args.device),
        "image_kernels": measured["image_kernels"],
        "batch": args.batch,
        "rounds": args.rounds,
        "threads": torch.get_num_threads(),
    }
    if args.sweep:
        result["sweep"] = sweep(frames[: args.frames], args.device, args.precision)
    if args.json:
        print(json.dumps(result))
        return 0
    print("CLIP ViT-B/32 architecture with RANDOM weights: speed only, no detection quality")
    print(
        f"device {result['device']}, ours in {result['precision']} "
        f"(image path {result['image_kernels']}), batch {args.batch}, "
        f"{result['threads']} threads, 1080p BGR input, medians of {args.rounds} rounds"
    )
    print(f"  seed way (PIL, full forward with text, batch 1, fp32): {seed_fps:7.2f} frames/s")
    print(f"  ours (numpy preprocess, cached text, batched):         {ours_fps:7.2f} frames/s")
    print(
        f"  ours, image encoder alone:                             "
        f"{result['ours_model_only_fps']:7.2f} frames/s"
    )
    print(
        f"  ours with clip's own image forward (autocast):         "
        f"{result['clip_forward_fps']:7.2f} frames/s"
    )
    print(f"  ratio to the seed way: {result['ratio']:.1f}×")
    print(f"  fast path over clip's forward: {result['fast_path_speedup']:.2f}×")
    for b, fps in result.get("sweep", {}).items():
        print(f"  batch {b:>3}: {fps:7.2f} frames/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
