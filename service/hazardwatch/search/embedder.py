"""How a search query becomes a vector: text and uploaded images are embedded by the
scoring model, in this process (`WorkerEmbedder`) or, for the events service of the
distributed roles, which has no model, by a worker over the broker
(`handoff/embedding.py`)."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from hazardwatch.records import Image
from hazardwatch.scoring.worker import ScoringWorker

F32 = npt.NDArray[np.float32]


class QueryEmbedder(Protocol):
    """Unit vectors of the model whose keyframes are searched."""

    @property
    def model_name(self) -> str: ...

    def text(self, text: str) -> F32: ...

    def image(self, image: Image) -> F32: ...


class WorkerEmbedder:
    """The scoring worker of this process (`hazardwatch run`)."""

    def __init__(self, worker: ScoringWorker) -> None:
        self._worker = worker

    @property
    def model_name(self) -> str:
        return self._worker.encoder.name

    def text(self, text: str) -> F32:
        return np.asarray(self._worker.embed_text([text])[0], np.float32)

    def image(self, image: Image) -> F32:
        return np.asarray(self._worker.embed_images([image])[0], np.float32)
