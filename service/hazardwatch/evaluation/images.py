"""`hazardwatch eval images DIR`: zero-shot (and few-shot) classification of labelled folders.

DIR holds one folder per label (e.g. `Accident/` and `Non Accident/`). Each folder is
mapped to a prompt-bank class, or to `hazard` / `normal` meaning any class of that kind.
A frame's prediction is its most probable class; the hazard score is the probability
mass on hazard classes. With `--normal-refs`, few-shot normal reference images give an
anomaly score (1 − best cosine similarity to a reference), reported alone and averaged
with the prompt score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from hazardwatch.errors import ConfigError
from hazardwatch.evaluation.metrics import roc_auc
from hazardwatch.scoring.bank import PromptBank
from hazardwatch.scoring.model import Encoder
from hazardwatch.scoring.preprocess import preprocess_batch
from hazardwatch.scoring.worker import TextIndex

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass(frozen=True)
class LabelMap:
    """Folder name → the bank classes it stands for."""

    folders: dict[str, frozenset[str]]
    hazard_folders: frozenset[str]

    @classmethod
    def parse(cls, pairs: Sequence[str], folders: Sequence[str], bank: PromptBank) -> LabelMap:
        names = {c.name for c in bank.classes}
        kinds = {
            "hazard": frozenset(bank.hazard_classes),
            "normal": frozenset(c.name for c in bank.classes if c.kind == "normal"),
        }
        mapping: dict[str, frozenset[str]] = {}
        for pair in pairs:
            folder, sep, target = pair.partition("=")
            if not sep or folder not in folders:
                raise ConfigError(
                    f"--map {pair!r}: write FOLDER=CLASS with FOLDER one of {sorted(folders)}"
                )
            if target in kinds:
                mapping[folder] = kinds[target]
            elif target in names:
                mapping[folder] = frozenset({target})
            else:
                raise ConfigError(
                    f"--map {pair!r}: {target!r} is not a bank class; use hazard, normal or one "
                    f"of {sorted(names)}"
                )
        missing = set(folders) - set(mapping)
        if missing:
            first = sorted(missing)[0]
            raise ConfigError(
                f"folders without --map: {sorted(missing)} (e.g. --map '{first}=hazard')"
            )
        hazard = frozenset(f for f, classes in mapping.items() if classes <= kinds["hazard"])
        return cls(mapping, hazard)

    def folder_of(self, class_name: str) -> str | None:
        exact = [f for f, c in self.folders.items() if c == {class_name}]
        if exact:
            return exact[0]
        return next((f for f, c in self.folders.items() if class_name in c), None)


def list_images(root: Path) -> dict[str, list[Path]]:
    if not root.is_dir():
        raise ConfigError(f"{root} is not a directory of class folders")
    found = {
        d.name: sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        for d in sorted(root.iterdir())
        if d.is_dir()
    }
    found = {k: v for k, v in found.items() if v}
    if len(found) < 2:
        raise ConfigError(f"{root} needs at least two folders of images (one per class)")
    return found


def embed_images(
    paths: Sequence[Path], encoder: Encoder, batch_size: int = 32, desc: str = "images"
) -> tuple[npt.NDArray[np.float32], list[Path]]:
    """Embeddings of the readable images; unreadable files are skipped and returned apart."""
    kept, skipped, out = [], [], []
    batch: list[Any] = []
    for path in tqdm(paths, unit="img", desc=desc):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            skipped.append(path)
            continue
        batch.append(image)
        kept.append(path)
        if len(batch) == batch_size:
            out.append(encoder.encode_images(preprocess_batch(batch, encoder.resolution)))
            batch = []
    if batch:
        out.append(encoder.encode_images(preprocess_batch(batch, encoder.resolution)))
    if not out:
        return np.zeros((0, 1), np.float32), skipped
    return np.concatenate(out), skipped


def evaluate_images(
    root: Path,
    encoder: Encoder,
    bank: PromptBank,
    pairs: Sequence[str],
    top_k: int = 5,
    normal_refs: Path | None = None,
    batch_size: int = 32,
) -> dict[str, Any]:
    images = list_images(root)
    labels = LabelMap.parse(pairs, list(images), bank)
    index = TextIndex.build(bank, encoder)
    names = bank.class_names
    hazard_idx = np.array([i for i, c in enumerate(bank.classes) if c.kind == "hazard"])
    truth, predicted, hazard_score, topk_hits, embeddings_all = [], [], [], [], []
    skipped: list[str] = []
    for folder, paths in images.items():
        emb, bad = embed_images(paths, encoder, batch_size, desc=folder)
        skipped += [str(p) for p in bad]
        if len(emb) == 0:
            continue
        probs, _ = index.score(emb, encoder.logit_scale)
        embeddings_all.append(emb)
        for row in probs:
            order = np.argsort(row)[::-1]
            truth.append(folder)
            predicted.append(labels.folder_of(names[order[0]]) or "(unmapped)")
            hazard_score.append(float(row[hazard_idx].sum()))
            topk_hits.append(any(names[i] in labels.folders[folder] for i in order[:top_k]))
    folders = list(images)
    confusion = np.zeros((len(folders), len(folders) + 1), np.int64)  # last column: unmapped
    for t, p in zip(truth, predicted, strict=True):
        confusion[folders.index(t), folders.index(p) if p in folders else len(folders)] += 1
    per_class = {}
    for i, folder in enumerate(folders):
        tp = int(confusion[i, i])
        fp = int(confusion[:, i].sum() - tp)
        fn = int(confusion[i].sum() - tp)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[folder] = {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}
    is_hazard = np.array([t in labels.hazard_folders for t in truth])
    report: dict[str, Any] = {
        "images": len(truth),
        "skipped_unreadable": skipped,
        "accuracy": float(np.mean([t == p for t, p in zip(truth, predicted, strict=True)])),
        f"top_{top_k}_accuracy": float(np.mean(topk_hits)),
        "per_class": per_class,
        "labels": folders,
        "confusion_matrix": confusion.tolist(),
        "roc_auc_hazard_vs_normal": roc_auc(np.array(hazard_score), is_hazard),
        "mapping": {f: sorted(c) for f, c in labels.folders.items()},
    }
    if normal_refs is not None:
        ref_paths = [
            p for p in sorted(normal_refs.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES
        ]
        refs, _ = embed_images(ref_paths, encoder, batch_size, desc="normal refs")
        if len(refs) == 0:
            raise ConfigError(f"--normal-refs {normal_refs} holds no readable image")
        everything = np.concatenate(embeddings_all)
        anomaly = 1.0 - (everything @ refs.T).max(axis=1)
        combined = 0.5 * np.array(hazard_score) + 0.5 * anomaly
        report["few_shot"] = {
            "references": len(refs),
            "roc_auc_anomaly": roc_auc(anomaly.astype(np.float64), is_hazard),
            "roc_auc_combined": roc_auc(combined.astype(np.float64), is_hazard),
        }
    return report


def plot_confusion(path: Path, report: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.array(report["confusion_matrix"])
    labels = report["labels"]
    fig, ax = plt.subplots(figsize=(1.6 * len(labels) + 3, 1.2 * len(labels) + 2.5), dpi=110)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels) + 1), [*labels, "(unmapped)"], rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(
            j,
            i,
            str(value),
            ha="center",
            va="center",
            color="white" if value > matrix.max() / 2 else "black",
        )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true folder")
    ax.set_title(f"accuracy {report['accuracy']:.2f}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
