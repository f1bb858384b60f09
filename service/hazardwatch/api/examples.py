"""Examples of a class defined by example (issue 26.4): what an admin names — a stored
event's peak, a keyframe, an uploaded image — turned into embeddings of the live model,
and the prior a new set of examples starts each camera on (search/prior.py)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

import numpy as np
from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hazardwatch.api.errors import problem, unprocessable
from hazardwatch.api.schemas import UUID_PATTERN
from hazardwatch.api.state import RETRY_AFTER_S, ApiState
from hazardwatch.detect.normal import decode_embedding
from hazardwatch.errors import ConfigError, EmbedderUnavailableError
from hazardwatch.records import ClassNormal, Image
from hazardwatch.scoring.bank import MAX_EXAMPLES, Example, PromptClass
from hazardwatch.search.prior import keyframe_prior

log = logging.getLogger(__name__)


class ExampleRef(BaseModel):
    """One example, named by exactly one of: a stored event (its peak frame), a stored
    keyframe, or an example the class already holds (its `source`, to keep it)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    event: str | None = Field(None, pattern=UUID_PATTERN, description="An event's uuid")
    keyframe: int | None = Field(None, ge=1, le=2**62, description="A keyframe's id")
    source: str | None = Field(
        None, min_length=1, max_length=200, description="Keep this example the class holds"
    )

    @model_validator(mode="after")
    def _one(self) -> ExampleRef:
        given = [k for k in ("event", "keyframe", "source") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("name exactly one of event, keyframe or source")
        return self


def resolve(
    state: ApiState, refs: Sequence[ExampleRef], old: PromptClass | None
) -> tuple[tuple[Example, ...], str]:
    """The examples the refs name, and the model that embedded them (all one model, the
    live one). 404 for one that is not stored; 409 for another model's."""
    if len(refs) > MAX_EXAMPLES:
        raise invalid("examples", f"a class holds at most {MAX_EXAMPLES} examples")
    held = {e.source: e for e in (old.examples if old is not None else ())}
    out: dict[str, Example] = {}
    models: set[str] = set()
    for ref in refs:
        if ref.source is not None:
            if ref.source not in held:
                raise invalid("examples", f"the class holds no example {ref.source!r}")
            example = held[ref.source]
            assert old is not None
            models.add(old.model)
        elif ref.event is not None:
            example, model = event_example(state, ref.event)
            models.add(model)
        else:
            assert ref.keyframe is not None
            example, model = keyframe_example(state, ref.keyframe)
            models.add(model)
        out.setdefault(example.source, example)
    if len(models) > 1:
        raise HTTPException(
            409, f"the examples were embedded by different models ({', '.join(sorted(models))})"
        )
    model = models.pop() if models else ""
    if model:
        check_model(state, model)
    return tuple(out.values()), model


def event_example(state: ApiState, uuid: str) -> tuple[Example, str]:
    record = state.repository.get_event(uuid)
    if record is None:
        raise HTTPException(404, f"no event {uuid!r}")
    if record.peak_embedding is None:
        raise HTTPException(404, f"event {uuid} has no stored embedding of its peak")
    try:
        vector = decode_embedding(record.peak_embedding)
    except ConfigError:
        raise HTTPException(404, f"event {uuid}'s stored embedding cannot be read") from None
    return Example.of(f"event:{uuid}", vector), record.model_name


def keyframe_example(state: ApiState, keyframe: int) -> tuple[Example, str]:
    if state.search is None:
        raise HTTPException(503, "search is off (search.enabled: false): no keyframes")
    found = state.search.table.embedding(keyframe)
    if found is None:
        raise HTTPException(404, f"no keyframe {keyframe} (removed by retention?)")
    vector, model = found
    return Example.of(f"keyframe:{keyframe}", np.frombuffer(vector, np.float16)), model


def upload_example(state: ApiState, image: Image, data: bytes) -> tuple[Example, str]:
    """An uploaded image embedded by the live model (a worker's, in the distributed roles)."""
    embedder = state.embedder
    if embedder is None:
        raise HTTPException(
            503,
            "no model can embed the image yet (it is loading); retry in a moment",
            headers={"Retry-After": RETRY_AFTER_S},
        )
    try:
        vector = embedder.image(image)
    except EmbedderUnavailableError as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": RETRY_AFTER_S}) from None
    except ValueError as exc:
        why = f"the image cannot be embedded: {exc}"
        raise unprocessable(problem(["body", "file"], why)) from None
    digest = hashlib.sha256(data).hexdigest()[:16]
    return Example.of(f"upload:{digest}", vector), embedder.model_name


def live_model(state: ApiState) -> str | None:
    """The model scoring frames now, as far as this service knows it."""
    if state.embedder is not None:
        return state.embedder.model_name
    if state.search is not None:
        return state.search.model_name
    return None


def check_model(state: ApiState, model: str) -> None:
    live = live_model(state)
    if live is not None and model != live:
        raise HTTPException(
            409,
            f"the example was embedded by {model or 'an unnamed model'} and frames are scored "
            f"by {live}: their vectors do not compare (use an event or keyframe of {live}, or "
            "an upload)",
        )


def prior(state: ApiState, c: PromptClass) -> ClassNormal | None:
    """Where the class by example may start on cameras that have not learned it: from
    their stored keyframes (None: search is off, or too few keyframes)."""
    if state.search is None or not c.examples:
        return None
    examples = np.stack([e.vector() for e in c.examples]).astype(np.float32)
    try:
        return keyframe_prior(state.search.table, examples, c.model, c.cameras or None)
    except Exception:  # the prior only shortens the silence while cameras learn
        log.exception("class %s: no prior from the stored keyframes", c.name)
        return None


def invalid(field: str, why: str) -> HTTPException:
    return HTTPException(422, [{"loc": ["body", field], "msg": why, "type": "value_error"}])
