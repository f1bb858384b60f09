"""422 answers in FastAPI's own validation shape, the `HTTPValidationError` the OpenAPI
document promises: `{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}`."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException


def problem(loc: list[str | int], msg: str, type_: str = "value_error") -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": type_}


def unprocessable(*problems: dict[str, Any]) -> HTTPException:
    return HTTPException(422, list(problems))
