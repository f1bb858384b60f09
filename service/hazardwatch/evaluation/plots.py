"""PNG plots for the offline evaluation (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from hazardwatch.evaluation.metrics import Span


def plot_scene(
    path: Path,
    title: str,
    signals: dict[str, Any],
    truth: list[Span],
    predicted: list[Span],
    fps: float,
    top: int = 4,
) -> None:
    """Each channel's progress to an event (1.0 at its threshold, either rule), truth and
    predictions shaded."""
    fig, ax = plt.subplots(figsize=(11, 4.2), dpi=110)
    ranked = sorted(signals, key=lambda n: float(np.max(signals[n])), reverse=True)
    for name in ranked[:top]:
        frames = np.arange(len(signals[name]))
        ax.plot(frames / fps, signals[name], linewidth=1.2, label=name)
    for start, end in truth:
        ax.axvspan(start / fps, (end + 1) / fps, color="tab:green", alpha=0.18, lw=0)
    for start, end in predicted:
        ax.axvspan(
            start / fps, (end + 1) / fps, ymin=0.0, ymax=0.06, color="tab:red", alpha=0.8, lw=0
        )
    ax.axhline(1.0, color="black", linestyle="--", linewidth=0.9, label="threshold")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("progress to an event (1 = threshold)")
    ax.set_title(f"{title}\ngreen: ground truth · red bar: predicted events", fontsize=10)
    ax.legend(loc="upper left", fontsize=8, ncol=3)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def plot_sweep(path: Path, result: dict[str, Any], baseline: dict[str, Any] | None = None) -> None:
    """Mean F1 and FPR against the enter threshold, globally and per hazard type."""
    rows = result["rows"]
    thresholds = [r["threshold"] for r in rows]
    fig, (ax_f1, ax_fpr) = plt.subplots(1, 2, figsize=(12, 4.2), dpi=110, sharex=True)
    ax_f1.plot(thresholds, [r["f1"] for r in rows], color="black", linewidth=2, label="all scenes")
    ax_fpr.plot(
        thresholds, [r["fpr"] for r in rows], color="black", linewidth=2, label="all scenes"
    )
    for kind in rows[0]["by_type"]:
        f1 = [r["by_type"][kind]["f1"] for r in rows]
        fpr = [r["by_type"][kind]["fpr"] for r in rows]
        if any(v is not None for v in f1):
            ax_f1.plot(thresholds, [np.nan if v is None else v for v in f1], "--", label=kind)
        if any(v is not None for v in fpr):
            ax_fpr.plot(thresholds, [np.nan if v is None else v for v in fpr], "--", label=kind)
    for ax, key in ((ax_f1, "f1"), (ax_fpr, "fpr")):
        ax.axvline(
            result["recommended_threshold"],
            color="tab:red",
            linewidth=1,
            label=f"recommended {result['recommended_threshold']:g}",
        )
        if baseline is not None and baseline.get(key) is not None:
            ax.axhline(baseline[key], color="tab:purple", linestyle=":", label="source baseline")
        ax.set_xlabel("enter threshold")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax_f1.set_title("mean frame F1 (higher is better)", fontsize=10)
    ax_fpr.set_title("mean false-positive rate (lower is better)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
