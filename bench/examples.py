"""Benchmark: what classes by example cost (issue 26.4).

- scoring: the worker's class scores (`TextIndex.score`) for a batch of 16 frames with the
  shipped bank alone, and with 10 classes by example of 64 examples each (512-dimensional,
  as ViT-B/32), in microseconds per frame, beside the model's own forward pass on this CPU
  (ViT-B/32 with random weights: the same compute);
- the prior a new set of examples starts each camera on (`search.prior.keyframe_prior`):
  seconds to read each camera's newest 1,000 normal keyframes from MariaDB and score them,
  for 1, 10 and 100 cameras (what a class scoped to every camera costs the admin's
  request).

    python bench/examples.py [--json]

MariaDB is the local one (`HAZARDWATCH_TEST_MYSQL_URL`, default root@127.0.0.1:3306); the
bench creates and drops its own database.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from clip_throughput import random_vit_b_32
from hazardwatch.records import KeyframeRecord
from hazardwatch.scoring.bank import DEFAULT_BANK, Example, PromptBank, load_bank
from hazardwatch.scoring.model import ClipEncoder, resolve_precision
from hazardwatch.scoring.worker import TextIndex
from hazardwatch.search.prior import PER_CAMERA, keyframe_prior
from hazardwatch.storage.engine import create_engine
from hazardwatch.storage.migrate import upgrade
from hazardwatch.storage.repository import Repository
from procs import cpu_flags
from score_rows import database

DIM = 512
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def with_examples(
    bank: PromptBank, rng: np.random.Generator, classes: int, each: int
) -> PromptBank:
    text = bank.to_text()
    for c in range(classes):
        lines = "".join(
            f"      - {{source: 'upload:{c}-{i}', embedding: '{Example.of('', v).embedding}'}}\n"
            for i, v in enumerate(unit_rows(rng, each))
        )
        text += f"  sight_{c}:\n    kind: hazard\n    model: bench\n    examples:\n{lines}"
    return PromptBank.from_text(text)


def per_frame_us(index: TextIndex, images: np.ndarray, logit_scale: float, rounds: int) -> float:
    index.score(images, logit_scale)
    started = time.perf_counter()
    for _ in range(rounds):
        index.score(images, logit_scale)
    return (time.perf_counter() - started) / rounds / len(images) * 1e6


def scoring(rng: np.random.Generator) -> dict[str, float]:
    precision = resolve_precision("auto", "cpu")  # as the service: bf16 where the CPU has it
    encoder = ClipEncoder.from_model(random_vit_b_32(), "bench", "cpu", precision, 16, True)
    bank = load_bank(DEFAULT_BANK)
    images = unit_rows(rng, 16)
    plain = TextIndex.build(bank, encoder)
    examples = TextIndex.build(with_examples(bank, rng, 10, 64), encoder)
    assert len(examples.examples) == 10
    pixels = rng.standard_normal((16, 3, 224, 224)).astype(np.float32)
    encoder.encode_images(pixels)
    started = time.perf_counter()
    encoder.encode_images(pixels)
    forward_us = (time.perf_counter() - started) / 16 * 1e6
    return {
        "scores_bank_only_us_per_frame": per_frame_us(plain, images, encoder.logit_scale, 200),
        "scores_with_10x64_examples_us_per_frame": per_frame_us(
            examples, images, encoder.logit_scale, 200
        ),
        "model_forward_us_per_frame": forward_us,
    }


def prior(rng: np.random.Generator) -> dict[str, float]:
    out = {}
    with database("mysql") as url:
        engine = create_engine(url)
        upgrade(engine)
        table = Repository(engine).keyframes
        example = unit_rows(rng, 1)
        for n in (1, 10, 100):
            cameras = [f"cam-{i:03d}" for i in range(n)]
            have = set(table.cameras(model_name="bench"))
            for camera in cameras:
                if camera in have:
                    continue
                vectors = unit_rows(rng, PER_CAMERA).astype(np.float16)
                table.add([KeyframeRecord(camera, T0 + timedelta(seconds=10 * i), v.tobytes(),
                                          f"{camera}/{i}.jpg", 4000, "bench")
                           for i, v in enumerate(vectors)])  # fmt: skip
            started = time.perf_counter()
            found = keyframe_prior(table, example, "bench", cameras)
            out[f"prior_{n}_cameras_s"] = time.perf_counter() - started
            assert found is not None
        engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(26)
    result: dict[str, Any] = {"cpu_flags": cpu_flags(), **scoring(rng), **prior(rng)}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"CPU flags: {result['cpu_flags']}")
    for key, value in result.items():
        if key != "cpu_flags":
            print(f"{key:42s} {value:12.3f}")


if __name__ == "__main__":
    main()
