"""Hazard classes in words, live: the prompt bank read and edited through the API.

Every change is a new version of the whole bank in the database — who, when, and a diff
of its YAML — and the newest is live: the scoring worker takes it within seconds (in the
distributed roles through the events service's broker bucket, and each score carries the
version it was computed with). Once a version is stored it wins over the bank file; the
file only seeds the first edit.
"""

from __future__ import annotations

import difflib
import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from hazardwatch.api.accounts import Principal
from hazardwatch.api.schemas import Responses, errors
from hazardwatch.api.security import requires
from hazardwatch.api.state import ApiState
from hazardwatch.errors import ConfigError
from hazardwatch.outputs.alerts import iso
from hazardwatch.records import Severity
from hazardwatch.scoring.bank import PromptBank, PromptClass
from hazardwatch.scoring.bank_source import DatabaseBank

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
        min_length=1,
        max_length=MAX_PROMPTS,
        description="Descriptions of the sight ('a forklift in a walkway'); a prompt may belong "
        "to one class only",
    )
    description: str = Field("", max_length=500)
    cameras: list[CameraName] = Field(
        default_factory=list, max_length=1000, description="Watched on these; empty: every camera"
    )
    enter_threshold: float | None = Field(None, ge=-1, le=1)
    exit_threshold: float | None = Field(None, ge=-1, le=1)


class NewClass(ClassChange):
    name: str = Field(pattern=CLASS_NAME, description="1-64 of a-z, 0-9 and _")


def router(state: ApiState, auth: Responses) -> APIRouter:
    router = APIRouter(prefix="/api/v1/classes", tags=["classes"], responses=auth)

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
        e404="No such class",
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
        new = _class(spec.name, spec, state)
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
        _get(bank, name)
        new = _class(name, spec, state)
        classes = tuple(new if c.name == name else c for c in bank.classes)
        return _store(state, banks, bank, classes, by, "update", name)

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


def _class(name: str, spec: ClassChange, state: ApiState) -> PromptClass:
    if (
        spec.enter_threshold is not None
        and spec.exit_threshold is not None
        and spec.exit_threshold > spec.enter_threshold
    ):
        raise _invalid("exit_threshold", "must not be above enter_threshold")
    unknown = sorted(set(spec.cameras) - _known_cameras(state))
    if unknown:
        raise _invalid("cameras", f"no camera {', '.join(map(repr, unknown))} is known")
    return PromptClass(
        name=name,
        kind=spec.kind,
        severity=spec.severity,
        prompts=tuple(dict.fromkeys(spec.prompts)),
        enter_threshold=spec.enter_threshold,
        exit_threshold=spec.exit_threshold,
        description=spec.description,
        cameras=tuple(dict.fromkeys(spec.cameras)),
    )


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


def _invalid(field: str, why: str) -> HTTPException:
    return HTTPException(422, [{"loc": ["body", field], "msg": why, "type": "value_error"}])


def _class_json(c: PromptClass) -> dict[str, Any]:
    return {"name": c.name, **c.to_mapping(), "cameras": list(c.cameras)}
