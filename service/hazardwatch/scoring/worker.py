"""The scoring worker: one model instance, batches formed across cameras.

It takes gated frames from the hand-off, preprocesses them in a batch, encodes them, and
computes per-prompt similarities and class probabilities against the cached text
embeddings of the prompt bank. The bank file is watched: an edit is loaded without a
restart, and a bad edit keeps the previous bank (and says why in the log).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from sqlalchemy.exc import SQLAlchemyError

from hazardwatch.errors import ConfigError
from hazardwatch.handoff.queue import Delivery, FrameSource, Retry
from hazardwatch.images import decode_at_least
from hazardwatch.metrics import Metrics
from hazardwatch.records import GatedFrame, Image, ScoredFrame
from hazardwatch.scoring.bank import PromptBank, class_probabilities, example_probability
from hazardwatch.scoring.bank_source import BankSource
from hazardwatch.scoring.model import Encoder
from hazardwatch.scoring.preprocess import crop_around, preprocess_batch

log = logging.getLogger(__name__)
BANK_CHECK_S = 2.0


@dataclass
class TextIndex:
    """Cached embeddings of one bank version: its prompts' text embeddings, and the
    examples of its classes by example."""

    bank: PromptBank
    prompt_embeddings: npt.NDArray[np.float32]  # [P, D]
    class_embeddings: npt.NDArray[np.float32]  # [W, D], the classes in words (bank.worded)
    # Per class by example that this model can score: its column and its examples [E, D].
    examples: dict[int, npt.NDArray[np.float32]] = field(default_factory=dict)

    @classmethod
    def build(cls, bank: PromptBank, encoder: Encoder, model_name: str = "") -> TextIndex:
        """`model_name`: what the deployment calls the encoder's model (events and
        keyframes name it so; default its own name): the examples must be of it."""
        model_name = model_name or encoder.name
        worded = bank.worded
        if bank.prompts:
            prompts = encoder.encode_text(bank.prompts)
            index = bank.prompt_class_index
            classes = np.stack([prompts[index == i].mean(axis=0) for i in worded])
            classes /= np.linalg.norm(classes, axis=1, keepdims=True)
        else:  # every class by example
            prompts = np.zeros((0, 0), np.float32)
            classes = np.zeros((0, 0), np.float32)
        examples = {}
        for i, c in enumerate(bank.classes):
            if not c.by_example:
                continue
            vectors = np.stack([e.vector() for e in c.examples]).astype(np.float32)
            dim = prompts.shape[1] if prompts.size else None
            if c.model != model_name or (dim is not None and vectors.shape[1] != dim):
                log.error(
                    "class %s is defined by examples embedded by %s; this worker's model is "
                    "%s, so it is not scored here (add the examples again with this model)",
                    c.name, c.model, model_name,
                )  # fmt: skip
                continue
            examples[i] = vectors
        return cls(bank, prompts.astype(np.float32), classes.astype(np.float32), examples)

    def score(
        self, images: npt.NDArray[np.float32], logit_scale: float
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float32]]:
        """[N, D] image embeddings → class probabilities [N, C] (NaN: a class by example
        this model cannot score) and prompt similarities [N, P]."""
        probs = np.full((images.shape[0], len(self.bank.classes)), np.nan)
        if self.class_embeddings.size:
            class_cos = images @ self.class_embeddings.T
            probs[:, self.bank.worded] = class_probabilities(class_cos.T, logit_scale).T
            sims = images @ self.prompt_embeddings.T
        else:
            sims = np.zeros((images.shape[0], 0), np.float32)
        for column, vectors in self.examples.items():
            if vectors.shape[1] == images.shape[1]:
                probs[:, column] = example_probability(vectors @ images.T)
        return probs, sims

    def probabilities(self, row: npt.NDArray[np.float64]) -> dict[str, float]:
        """One frame's probabilities by class name, without the classes it cannot score."""
        return {
            name: float(p)
            for name, p in zip(self.bank.class_names, row, strict=True)
            if np.isfinite(p)
        }


@dataclass
class WorkerStats:
    batches: int = 0
    frames: int = 0
    bad_frames: int = 0
    failed_batches: int = 0
    bank_reloads: int = 0
    bank_errors: int = 0
    stale_by_camera: Counter[str] = field(default_factory=Counter)  # waited too long
    last_batch_size: int = 0
    last_batch_s: float = 0.0
    # A bounded recent window for summaries; a long run must not grow memory.
    batch_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=1000))
    batch_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=1000))

    def record(self, size: int, seconds: float) -> None:
        self.batches += 1
        self.frames += size
        self.last_batch_size, self.last_batch_s = size, seconds
        self.batch_sizes.append(size)
        self.batch_seconds.append(seconds)


class ScoringWorker:
    """Consumes the hand-off on one thread and calls `on_scored` for each batch's frames."""

    def __init__(
        self,
        encoder: Encoder,
        bank: PromptBank,
        queue: FrameSource[GatedFrame],
        on_scored: Callable[[list[ScoredFrame]], None],
        *,
        batch_size: int = 16,
        max_batch_wait_s: float = 0.05,
        motion_crop: bool = False,
        max_frame_age_s: float = 0.0,
        bank_source: BankSource | None = None,
        metrics: Metrics | None = None,
        model_name: str = "",
    ) -> None:
        """`bank_source`: asked every `BANK_CHECK_S` for the live bank; a new version is
        scored with from the next batch (None: `bank` for good). `model_name`: what the
        deployment calls the model (default the encoder's name; a worker node: the
        configured `scoring.model`, as the events service names it)."""
        self.encoder = encoder
        self.model_name = model_name or encoder.name
        self.metrics = metrics
        self.queue = queue
        self.on_scored = on_scored
        self.batch_size = batch_size
        self.max_batch_wait_s = max_batch_wait_s
        self.motion_crop = motion_crop
        self.max_frame_age_s = max_frame_age_s
        self.stats = WorkerStats()
        self._bank_source = bank_source
        self._bank_checked = time.monotonic()
        self._bank_failing = False
        self.index = TextIndex.build(bank, encoder, self.model_name)
        # The API scores uploads with the same model; one forward pass at a time.
        self._model_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scoring-worker", daemon=True)

    @property
    def bank(self) -> PromptBank:
        return self.index.bank

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Finish the batch in hand and stop fetching (what the source still holds stays
        there, for another worker or a later start); True once the thread has ended."""
        self._stop.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def wait_drained(self, timeout: float | None = None) -> bool:
        """Wait until the source has ended (closed and drained, in one process)."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        """Until the source ends or `stop` is called."""
        while not self._stop.is_set():
            deliveries = self.queue.fetch(self.batch_size, 0.5, self.max_batch_wait_s)
            if deliveries is None:
                break
            self.maybe_reload_bank()
            if deliveries:
                self._handle(self._fresh(deliveries))

    def _handle(self, deliveries: list[Delivery[GatedFrame]]) -> None:
        """Score a batch and settle every delivery: ack when handled, nak when the batch
        failed (another try), term for frames that can never be scored."""
        if not deliveries:
            return
        try:
            scored, rejected = self._score(deliveries)
        except Exception:  # a broken batch must not stop scoring
            self.stats.failed_batches += 1
            log.exception("scoring a batch of %d frames failed; retried", len(deliveries))
            for delivery in reversed(deliveries):  # a local nak goes first in line: keep order
                delivery.nak()
            return
        for delivery in rejected:
            delivery.term()
        if scored:
            try:
                self.on_scored(scored)
            except Retry as exc:  # the next hop is down: give the frames back, score later
                log.warning("%d scored frames not handed on (%s); retried", len(scored), exc)
                for delivery in reversed(deliveries):
                    delivery.nak()
                return
            except Exception:  # the detector's fault, not the frames': no second scoring
                log.exception("handling %d scored frames failed", len(scored))
        for delivery in deliveries:
            if delivery not in rejected:
                delivery.ack()

    def _fresh(self, deliveries: list[Delivery[GatedFrame]]) -> list[Delivery[GatedFrame]]:
        """The frames young enough to score; the rest are counted per camera and termed."""
        if not self.max_frame_age_s:
            return deliveries
        oldest_ok = time.time() - self.max_frame_age_s  # wall clock: it crosses machines
        fresh = []
        for delivery in deliveries:
            if delivery.item.frame.received_at >= oldest_ok:
                fresh.append(delivery)
            else:
                self.stats.stale_by_camera[delivery.item.frame.camera] += 1
                delivery.term()
        return fresh

    def _score(
        self, deliveries: list[Delivery[GatedFrame]]
    ) -> tuple[list[ScoredFrame], list[Delivery[GatedFrame]]]:
        batch = [d.item for d in deliveries]
        scored = self.score(batch)
        done = {id(s.gated) for s in scored}
        return scored, [d for d in deliveries if id(d.item) not in done]

    def score(self, batch: list[GatedFrame]) -> list[ScoredFrame]:
        """Score a batch; frames that cannot be preprocessed are logged and skipped."""
        started = time.perf_counter()
        resolution = self.encoder.resolution
        good: list[GatedFrame] = []
        views = []
        for item in batch:
            try:
                image, scale = model_pixels(item, resolution)
                view = [preprocess_batch([image], resolution)[0]]
                if self.motion_crop and item.motion.box is not None:
                    box = item.motion.box
                    if scale != 1.0:
                        box = (round(box[0] * scale), round(box[1] * scale),
                               round(box[2] * scale), round(box[3] * scale))  # fmt: skip
                    view.append(preprocess_batch([crop_around(image, box)], resolution)[0])
            except ValueError as exc:  # ImageError included: a JPEG that does not decode
                self.stats.bad_frames += 1
                if self.metrics is not None:
                    self.metrics.frames_rejected.inc()
                log.warning(
                    "camera %s frame %d skipped: %s", item.frame.camera, item.frame.seq, exc
                )
                continue
            good.append(item)
            views.append(view)
        if not good:
            return []
        flat = np.stack([v for view in views for v in view])
        with self._model_lock:
            embeddings = self.encoder.encode_images(flat)
        # With a motion crop, a frame's embedding is the normalised mean of its two views.
        per_frame = []
        offset = 0
        for view in views:
            chunk = embeddings[offset : offset + len(view)].mean(axis=0)
            per_frame.append(chunk / np.linalg.norm(chunk))
            offset += len(view)
        index = self.index
        probs, sims = index.score(np.stack(per_frame).astype(np.float32), self.encoder.logit_scale)
        out = [
            ScoredFrame(
                item,
                index.probabilities(probs[i]),
                sims[i],
                index.bank,
                per_frame[i].astype(np.float32),
            )
            for i, item in enumerate(good)
        ]
        seconds = time.perf_counter() - started
        self.stats.record(len(good), seconds)
        if self.metrics is not None:
            self.metrics.batch_size.observe(len(good))
            self.metrics.inference_seconds.observe(seconds)
            for item in good:
                self.metrics.frames_scored.labels(item.frame.camera).inc()
        return out

    def score_images(
        self, images: list[Image]
    ) -> tuple[PromptBank, npt.NDArray[np.float64], npt.NDArray[np.float32]]:
        """Score arbitrary BGR images (API uploads, heatmap crops) with the live bank.

        Returns the bank used, class probabilities [N, C] and prompt similarities [N, P].
        Raises ValueError for an image that cannot be preprocessed.
        """
        index = self.index
        batch = preprocess_batch(images, self.encoder.resolution)
        with self._model_lock:
            embeddings = self.encoder.encode_images(batch)
        probs, sims = index.score(embeddings.astype(np.float32), self.encoder.logit_scale)
        return index.bank, probs, sims

    def embed_text(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Unit text embeddings [N, D] from the live model (search queries)."""
        with self._model_lock:
            embeddings = self.encoder.encode_text(list(texts))
        return _unit_rows(embeddings)

    def embed_images(self, images: list[Image]) -> npt.NDArray[np.float32]:
        """Unit image embeddings [N, D] of BGR images, preprocessed as frames are
        (search by an uploaded image). Raises ValueError for one that cannot be."""
        batch = preprocess_batch(images, self.encoder.resolution)
        with self._model_lock:
            embeddings = self.encoder.encode_images(batch)
        return _unit_rows(embeddings)

    def maybe_reload_bank(self, force: bool = False) -> bool:
        """Take the source's live bank when its version changed; a bank that cannot be
        read (a bad edit, the database away) keeps the current one."""
        if self._bank_source is None:
            return False
        now = time.monotonic()
        if not force and now - self._bank_checked < BANK_CHECK_S:
            return False
        self._bank_checked = now
        try:
            bank = self._bank_source.current()
            if bank.version == self.bank.version:
                self._bank_failing = False
                return False
            with self._model_lock:  # the API scores uploads on other threads
                index = TextIndex.build(bank, self.encoder, self.model_name)
            self.index = index
        except (ConfigError, SQLAlchemyError, OSError) as exc:
            if not self._bank_failing:  # once, not every two seconds
                self.stats.bank_errors += 1
                log.error("prompt bank not reloaded, keeping version %s: %s",
                          self.bank.version, exc)  # fmt: skip
            self._bank_failing = True
            return False
        self._bank_failing = False
        self.stats.bank_reloads += 1
        log.info("prompt bank reloaded: version %s, %d classes", bank.version, len(bank.classes))
        return True


def _unit_rows(rows: npt.ArrayLike) -> npt.NDArray[np.float32]:
    out = np.asarray(rows, np.float32)
    unit: npt.NDArray[np.float32] = out / np.maximum(
        np.linalg.norm(out, axis=1, keepdims=True), 1e-12
    )
    return unit


def model_pixels(item: GatedFrame, resolution: int) -> tuple[Image, float]:
    """The pixels the model sees, and their scale to the frame's (for the motion box). A
    frame that crossed a broker and was not decoded yet is decoded only as large as the
    model needs: DCT scaling, a fraction of a full decode."""
    if not item.frame.decoded and item.wire_image is not None:
        return decode_at_least(item.wire_image, resolution)
    return item.frame.image, 1.0
