"""Re-embedding stored keyframes after a model change (`hazardwatch reindex`): each
keyframe made by another model is embedded again from its thumbnail with the configured
model and stored with that model's name. Batches commit as they go, so an interrupted
run resumes with what is left; the service loads the new vectors at its next start.

A thumbnail is all that is kept of a keyframe's pixels, so a re-embedded vector sees a
`search.thumbnail_width` image where the live one saw the frame: close, not identical.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from hazardwatch.images import ImageError, decode_jpeg
from hazardwatch.scoring.model import Encoder
from hazardwatch.scoring.preprocess import preprocess_batch
from hazardwatch.search.keyframes import to_f16
from hazardwatch.storage.keyframes import KeyframeTable

log = logging.getLogger(__name__)
BATCH = 64


@dataclass
class ReindexResult:
    embedded: int = 0
    missing: int = 0  # thumbnails gone (the rows are deleted: nothing left to search)


def reindex(
    table: KeyframeTable,
    media_dir: Path,
    encoder: Encoder,
    *,
    camera: str | None = None,
    since: datetime | None = None,
    progress: Callable[[int], None] = lambda done: None,
    batch: int = BATCH,
) -> ReindexResult:
    """Embed every keyframe of another model than `encoder` again (of `camera`, from
    `since`); `progress(n)` hears each batch's count."""
    result = ReindexResult()
    for rows in table.scan(
        model_name=encoder.name, other_models=True, camera=camera, since=since, batch=batch
    ):
        images, keys, gone = [], [], []
        for key, path in zip(rows.ids, rows.thumbnail_paths, strict=True):
            try:
                images.append(decode_jpeg((media_dir / path).read_bytes()))
                keys.append(key)
            except (OSError, ImageError) as exc:
                log.warning("keyframe %d: thumbnail %s unreadable (%s); deleted", key, path, exc)
                gone.append(path)
        if gone:
            table.delete_paths(gone)
            result.missing += len(gone)
        if images:
            embeddings = np.asarray(
                encoder.encode_images(preprocess_batch(images, encoder.resolution)), np.float32
            )
            embeddings /= np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
            table.set_embeddings(
                [(key, to_f16(v)) for key, v in zip(keys, embeddings, strict=True)], encoder.name
            )
            result.embedded += len(keys)
        progress(len(rows.ids))
    return result
