"""What the API takes and answers beyond plain JSON: error bodies, query time and link
parameters, the feedback body, and the rule that an unknown query parameter is a 422."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Query, Request
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)

from hazardwatch.api.errors import problem, unprocessable
from hazardwatch.records import Verdict

UUID_PATTERN = r"^[0-9a-fA-F-]{8,64}$"


class ErrorBody(BaseModel):
    """Every error but a 422: what went wrong and how to fix it."""

    detail: str


class Readiness(BaseModel):
    status: str = Field(description="ready, or degraded with the reasons")
    reasons: list[str]


def _iso_time(value: Any) -> Any:
    """Query times must be ISO 8601 text: pydantic would read "0.5" as a Unix time."""
    if isinstance(value, str) and not re.match(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}", value):
        raise ValueError("use ISO 8601 with a time zone, e.g. 2026-01-01T00:00:00Z")
    return value


def _in_range(value: datetime) -> datetime:
    """A time that exists in UTC (0001-01-01T00:00+23:59 does not): else a 422."""
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError("the time is out of range once converted to UTC") from None


IsoTime = Annotated[AwareDatetime, BeforeValidator(_iso_time), AfterValidator(_in_range)]


LinkExpiry = Annotated[
    int | None, Query(ge=0, description="Signed links: Unix time the link expires (with sig)")
]
LinkSignature = Annotated[
    str | None,
    Query(max_length=64, description="Signed links: HMAC of the path and exp; no token needed"),
]


# OpenAPI `responses` of an operation: status code → model and description.
Responses = dict[int | str, dict[str, Any]]


def errors(**codes: str) -> Responses:
    """OpenAPI `responses` for the error codes an operation can answer, e.g. errors(e404=…)."""
    return {
        int(code[1:]): {"model": ErrorBody, "description": text} for code, text in codes.items()
    }


class Feedback(BaseModel):
    """An operator's verdict on an event."""

    model_config = ConfigDict(extra="forbid")

    verdict: Verdict = Field(
        description="false_alarm: this sight is normal here (it is added to the camera's "
        "normal references and will not alert again); confirmed: a real hazard."
    )
    note: str | None = Field(None, max_length=1000, description="free text, e.g. who and why")
    add_example: bool = Field(
        False,
        description="With confirmed: the event's peak becomes one more example of its class "
        "(a class defined by examples), which each camera then learns again",
    )


def _query_names(dependant: Any) -> set[str]:
    """The query parameters a route takes, its dependencies' included."""
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def reject_unknown_query(request: Request) -> None:
    """422 for a query parameter the route does not take: a typo must not widen a filter
    (`/api/v1/events?class_name=fire` would otherwise list every event). Routes outside
    the API document are pages, whose query is the browser's (the review page keeps its
    filters there)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or not getattr(route, "include_in_schema", True):
        return
    known = _query_names(dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        takes = ", ".join(sorted(known)) or "none"
        raise unprocessable(
            *(
                problem(
                    ["query", name],
                    f"unknown query parameter {name!r}; this endpoint takes {takes}",
                    "extra_forbidden",
                )
                for name in unknown
            )
        )
