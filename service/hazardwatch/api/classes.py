"""Hazard classes in words or by example, live: the prompt bank read and edited through
the API (examples: api/examples.py).

Every change is a new version of the whole bank in the database — who, when, and a diff
of its YAML — and the newest is live: the scoring worker takes it within seconds (in the
distributed roles through the events service's broker bucket, and each score carries the
version it was computed with). Once a version is stored it wins over the bank file; the
file only seeds the first edit.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, HTTPException, Path, Query, Response, UploadFile
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.concurrency import run_in_threadpool

from hazardwatch.api.accounts import Principal
from hazardwatch.api.examples import (
    ExampleRef,
    check_model,
    event_example,
    invalid,
    keyframe_example,
    prior,
    resolve,
    upload_example,
)
from hazardwatch.api.overlay import decode_upload, one_example, read_upload
from hazardwatch.api.schemas import UUID_PATTERN, Responses, errors
from hazardwatch.api.security import requires
from hazardwatch.api.state import ApiState
from hazardwatch.errors import ConfigError
from hazardwatch.outputs.alerts import iso
from hazardwatch.records import ClassNormal, Severity
from hazardwatch.scoring.bank import MAX_EXAMPLES, Example, PromptBank, PromptClass
from hazardwatch.scoring.bank_source import DatabaseBank
from hazardwatch.settings import ApiSettings

log = logging.getLogger(__name__)
CLASS_NAME = r"^[a-z0-9][a-z0-9_]{0,63}$"
CAMERA_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
MAX_CLASSES = 100
MAX_PROMPTS = 32
MAX_BANK_BYTES = 256_000
Prompt = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
CameraName = Annotated[str, StringConstraints(pattern=CAMERA_NAME)]
ClassPath = Annotated[str, Path(pattern=CLASS_NAME, description="The class's name")]


class ClassChange(BaseModel):
    """A class as an admin writes it: what it looks like in words, and where it applies."""

    # Strict: `false` is no threshold and `"1"` no number (a JSON number is a float).
    model_config = ConfigDict(extra="forbid", strict=True)

    kind: Literal["hazard", "normal"] = Field(
        "hazard", description="hazard: raises events; normal: what a scene usually shows"
    )
    severity: Severity = "warning"
    prompts: list[Prompt] = Field(
        default_factory=list,
        max_length=MAX_PROMPTS,
        description="Descriptions of the sight ('a forklift in a walkway'); a prompt may belong "
        "to one class only. Give prompts or examples",
    )
    examples: list[ExampleRef] | None = Field(
        None,
        max_length=MAX_EXAMPLES,
        description="The sight by example: events' peaks, keyframes, or (to keep them) examples "
        "the class holds, by source; uploads go to POST /api/v1/classes/{name}/examples. "
        "Omitted on a change: the class keeps its examples",
    )
    description: str = Field("", max_length=500)
    cameras: list[CameraName] = Field(
        default_factory=list, max_length=1000, description="Watched on these; empty: every camera"
    )
    enter_threshold: float | None = Field(None, ge=-1, le=1)
    exit_threshold: float | None = Field(None, ge=-1, le=1)


class NewClass(ClassChange):
    name: str = Field(pattern=CLASS_NAME, description="1-64 of a-z, 0-9 and _")


def router(state: ApiState, settings: ApiSettings, auth: Responses) -> APIRouter:
    router = APIRouter(prefix="/api/v1/classes", tags=["classes"], responses=auth)
    max_bytes = int(settings.max_upload_mb * 1e6)

    @router.get("", responses=errors(e503="This service does not serve the prompt bank"))
    def list_classes(
        by: Annotated[Principal, Depends(requires("viewer"))],
    ) -> dict[str, Any]:
        """The live bank: its version, where it comes from (database: edited through this
        API; file: the bank file) and its classes."""
        banks = _banks(state)
        bank = _current(banks)
        return {
            "version": bank.version,
            "source": banks.source,
            "classes": [_class_json(c) for c in bank.classes],
        }

    @router.get("/history", responses=errors(e503="This service does not serve the prompt bank"))
    def history(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        *,
        by: Annotated[Principal, Depends(requires("viewer"))],
    ) -> dict[str, Any]:
        """Every change, newest first: version, who, when, what (action, class, diff)."""
        return {
            "items": [
                {
                    "version": v.version,
                    "at": iso(v.created_at),
                    "by": v.created_by,
                    "action": v.action,
                    "class_name": v.class_name,
                    "diff": v.diff,
                }
                for v in _banks(state).table.history(limit)
            ]
        }

    edit_errors = errors(
        e404="No such class, or no such event or keyframe named as an example",
        e409="A class of that name exists; or the change would leave no hazard class",
        e503="This service does not serve the prompt bank",
    )

    @router.post("", status_code=201, responses=edit_errors)
    def create(
        spec: NewClass, by: Annotated[Principal, Depends(requires("admin"))]
    ) -> dict[str, Any]:
        """Add a class; scoring uses it within seconds, no restart."""
        banks = _banks(state)
        bank = _current(banks)
        if spec.name in bank.class_names:
            raise HTTPException(409, f"a class {spec.name!r} exists; change it with PUT")
        new = _class(spec.name, spec, state, None)
        return _store(state, banks, bank, (*bank.classes, new), by, "create", spec.name)

    @router.put("/{name}", responses=edit_errors)
    def replace(
        name: ClassPath,
        spec: ClassChange,
        by: Annotated[Principal, Depends(requires("admin"))],
    ) -> dict[str, Any]:
        """Change a class (everything but its name)."""
        banks = _banks(state)
        bank = _current(banks)
        new = _class(name, spec, state, _get(bank, name))
        classes = tuple(new if c.name == name else c for c in bank.classes)
        return _store(state, banks, bank, classes, by, "update", name)

    @router.post(
        "/{name}/examples",
        responses=errors(
            e404="No such event or keyframe",
            e409="The class is described in words, or the example is of another model",
            e413="The upload or the image's pixel count is over the limit",
            e415="Not an image this service can decode",
            e503="This service does not serve the prompt bank, or no model can embed the image now",
        ),
    )
    async def add(
        name: ClassPath,
        event: Annotated[
            str | None, Query(pattern=UUID_PATTERN, description="This event's peak")
        ] = None,
        keyframe: Annotated[int | None, Query(ge=1, le=2**62, description="This keyframe")] = None,
        # Typed without None, so the document offers a file or nothing, never a null.
        file: Annotated[UploadFile, File(description="This image (JPEG, PNG, BMP, WebP)")] = None,  # type: ignore[assignment]
        *,
        by: Annotated[Principal, Depends(requires("admin"))],
    ) -> dict[str, Any]:
        """One more example for a class by example: an event's peak (`event`), a keyframe
        (`keyframe`) or an uploaded image (multipart field `file`); give exactly one. Each
        camera then learns the class again with it. A class not in the bank yet is made
        from this first example (a hazard of severity warning, on every camera; change
        those with PUT, which keeps the examples)."""
        upload: UploadFile | None = file  # None when not given, whatever its annotation
        one_example(event, keyframe, upload)
        if upload is not None:
            data = await read_upload(upload, max_bytes)
            image = await run_in_threadpool(decode_upload, data)
            example, model = await run_in_threadpool(upload_example, state, image, data)
        elif event is not None:
            example, model = await run_in_threadpool(event_example, state, event)
        else:
            assert keyframe is not None
            example, model = await run_in_threadpool(keyframe_example, state, keyframe)
        return await run_in_threadpool(add_example, state, name, example, model, by)

    @router.delete("/{name}", status_code=204, response_class=Response, responses=edit_errors)
    def delete(name: ClassPath, by: Annotated[Principal, Depends(requires("admin"))]) -> Response:
        """Remove a class; its events stay. The last hazard class cannot go."""
        banks = _banks(state)
        bank = _current(banks)
        _get(bank, name)
        classes = tuple(c for c in bank.classes if c.name != name)
        if not any(c.kind == "hazard" for c in classes):
            raise HTTPException(409, f"{name!r} is the last hazard class; add another first")
        _store(state, banks, bank, classes, by, "delete", name)
        return Response(status_code=204)

    return router


def _banks(state: ApiState) -> DatabaseBank:
    if state.banks is None:
        raise HTTPException(503, "this service does not serve the prompt bank")
    return state.banks


def _current(banks: DatabaseBank) -> PromptBank:
    try:
        return banks.current()
    except ConfigError as exc:
        raise HTTPException(503, f"the live prompt bank cannot be read: {exc}") from None


def _get(bank: PromptBank, name: str) -> PromptClass:
    try:
        return bank.get(name)
    except KeyError:
        raise HTTPException(
            404, f"no class {name!r}; the bank has {', '.join(bank.class_names)}"
        ) from None


def _class(name: str, spec: ClassChange, state: ApiState, old: PromptClass | None) -> PromptClass:
    if (
        spec.enter_threshold is not None
        and spec.exit_threshold is not None
        and spec.exit_threshold > spec.enter_threshold
    ):
        raise _invalid("exit_threshold", "must not be above enter_threshold")
    unknown = sorted(set(spec.cameras) - _known_cameras(state))
    if unknown:
        raise _invalid("cameras", f"no camera {', '.join(map(repr, unknown))} is known")
    examples: tuple[Example, ...] = ()
    model = ""
    if spec.examples is not None:
        examples, model = resolve(state, spec.examples, old)
    elif old is not None and old.by_example and not spec.prompts:
        examples, model = old.examples, old.model
    if examples and spec.prompts:
        raise _invalid("examples", "a class is described by prompts or by examples, not both")
    if not examples and not spec.prompts:
        raise _invalid("prompts", "give prompts (words) or examples (events, keyframes)")
    new = PromptClass(
        name=name,
        kind=spec.kind,
        severity=spec.severity,
        prompts=tuple(dict.fromkeys(spec.prompts)),
        enter_threshold=spec.enter_threshold,
        exit_threshold=spec.exit_threshold,
        description=spec.description,
        cameras=tuple(dict.fromkeys(spec.cameras)),
        examples=examples,
        model=model,
    )
    return dataclasses.replace(new, normal=_prior(state, new, old))


def _prior(state: ApiState, new: PromptClass, old: PromptClass | None) -> ClassNormal | None:
    """A class in words keeps the prior the bank file gave it (the API does not edit
    priors); a class by example gets one from the stored keyframes, again when its
    examples or cameras change."""
    if not new.by_example:
        return old.normal if old is not None and not old.by_example else None
    if old is not None and (old.definition, old.cameras) == (new.definition, new.cameras):
        return old.normal
    return prior(state, new)


def add_example(
    state: ApiState, name: str, example: Example, model: str, by: Principal
) -> dict[str, Any]:
    """One more example for a class by example (an upload, an event confirmed by an
    operator); each camera learns the class again with it."""
    banks = _banks(state)
    bank = _current(banks)
    if name not in bank.class_names:  # the first example makes the class
        check_model(state, model)
        new = PromptClass(name, "hazard", "warning", (), examples=(example,), model=model)
        new = dataclasses.replace(new, normal=_prior(state, new, None))
        return _store(state, banks, bank, (*bank.classes, new), by, "create", name)
    old = bank.get(name)
    if not old.by_example:
        raise HTTPException(
            409, f"class {name!r} is described in words; examples go to a class by example"
        )
    if old.model != model:
        raise HTTPException(
            409, f"class {name!r} holds examples of {old.model}, this one is of {model}"
        )
    check_model(state, model)
    if any(e.source == example.source for e in old.examples):
        return {"version": bank.version, "diff": "", "class": _class_json(old)}
    if len(old.examples) >= MAX_EXAMPLES:
        raise _invalid("examples", f"a class holds at most {MAX_EXAMPLES} examples")
    new = dataclasses.replace(old, examples=(*old.examples, example))
    new = dataclasses.replace(new, normal=_prior(state, new, old))
    classes = tuple(new if c.name == name else c for c in bank.classes)
    return _store(state, banks, bank, classes, by, "example", name)


def _known_cameras(state: ApiState) -> set[str]:
    """Cameras running now and every camera the database has seen."""
    names = {c.name for c in state.status.cameras()}
    return names | {str(row["name"]) for row in state.repository.list_cameras()}


def _store(
    state: ApiState,
    banks: DatabaseBank,
    old: PromptBank,
    classes: tuple[PromptClass, ...],
    by: Principal,
    action: str,
    name: str,
) -> dict[str, Any]:
    if len(classes) > MAX_CLASSES:
        raise _invalid("name", f"a bank holds at most {MAX_CLASSES} classes")
    text = PromptBank(classes, "").to_text()
    if len(text.encode()) > MAX_BANK_BYTES:
        raise _invalid("prompts", f"the bank would be over {MAX_BANK_BYTES:,} bytes")
    try:
        bank = PromptBank.from_text(text, "the edited bank")  # every rule the file has
    except ConfigError as exc:
        raise _invalid("body", str(exc).removeprefix("prompt bank the edited bank: ")) from None
    diff = "".join(
        difflib.unified_diff(
            old.to_text().splitlines(keepends=True),
            text.splitlines(keepends=True),
            f"version {old.version}",
            f"version {bank.version}",
        )
    )
    banks.table.add(bank.version, text, by.name, action, name, diff)
    try:
        state.bank_changed()
    except Exception as exc:  # the broker is away: the publisher's next round sends it
        log.warning("prompt bank version %s stored, not yet published: %s", bank.version, exc)
    answer: dict[str, Any] = {"version": bank.version, "diff": diff}
    if action != "delete":
        answer["class"] = _class_json(bank.get(name))
    return answer


_invalid = invalid


def _class_json(c: PromptClass) -> dict[str, Any]:
    """A class as the API shows it: examples by source, not their vectors."""
    out = {"name": c.name, **c.to_mapping(), "prompts": list(c.prompts), "cameras": list(c.cameras)}
    if c.examples:
        out["examples"] = [{"source": e.source} for e in c.examples]
    return out
