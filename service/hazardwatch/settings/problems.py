"""A validation error as an operator can act on it: one line per problem with the key's
path, the bad value (secrets masked), what is allowed and the field's own description;
a value from an environment variable is blamed on that variable, not on the file."""

from __future__ import annotations

import os
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from hazardwatch.redact import redact_hook_url, redact_text, redact_url
from hazardwatch.settings.schema import ENV_PREFIX, Settings


def models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, list, Union)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin in (list, tuple, typing.Union, types.UnionType) or origin is not None:
        found: list[type[BaseModel]] = []
        for arg in typing.get_args(annotation):
            found.extend(models_in(arg))
        return found
    return []


def _field_at(loc: tuple[int | str, ...]) -> tuple[type[BaseModel] | None, str | None]:
    """Walk `loc` from the Settings root; return (model holding the last key, that key)."""
    model: type[BaseModel] | None = Settings
    for i, part in enumerate(loc):
        if model is None:
            return None, None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if i == len(loc) - 1 or field is None:
            return model, part
        models = models_in(field.annotation)
        model = models[0] if models else None
    return model, None


def _is_secret(model: type[BaseModel] | None, key: str | None) -> bool:
    if model is None or key is None or key not in model.model_fields:
        return False
    annotation = model.model_fields[key].annotation
    text = str(annotation)
    return "Secret" in text


def _loc_text(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _clean_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    # Validators add loc parts of their own ('function-after[…]', 'float', 'tuple[…]').
    return tuple(
        p
        for p in loc
        if not (isinstance(p, str) and ("[" in p or p in {"float", "int", "str", "bool"}))
    )


def _env_name(loc: tuple[int | str, ...]) -> str | None:
    """The HAZARDWATCH_SECTION__KEY variable that sets this key, when it is set."""
    parts = [str(p) for p in loc if isinstance(p, str)]
    if len(parts) < 2:
        return None
    name = f"{ENV_PREFIX}{'__'.join(parts).upper()}"
    return name if name in os.environ else None


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem: key path, bad value (secrets masked), what is allowed; a value
    from an environment variable is blamed on that variable, not on the file."""
    errors = exc.errors(include_url=False)
    from_env = [_env_name(_clean_loc(e["loc"])) for e in errors]
    if all(from_env):
        source = "environment variable" + ("s" if len(set(from_env)) > 1 else "")
    lines = [
        f"{source} {'are' if source.endswith('s') else 'is'} invalid "
        f"({exc.error_count()} problem{'s' if exc.error_count() > 1 else ''}):"
    ]
    for error, env in zip(errors, from_env, strict=True):
        loc = _clean_loc(error["loc"])
        model, key = _field_at(loc)
        where = (_loc_text(loc) or "(top level)") + (f" (from {env})" if env else "")
        value = error.get("input")
        if _is_secret(model, key):
            field = model.model_fields.get(key or "") if model is not None else None
            hook = field is not None and "SecretHookUrl" in str(field.annotation)
            mask = redact_hook_url if hook else redact_url
            shown = repr(mask(value)) if isinstance(value, str) and "://" in value else "***"
        else:
            shown = redact_text(repr(value))
        if len(shown) > 80:
            shown = shown[:77] + "..."
        if error["type"] == "extra_forbidden":
            parent = _loc_text(loc[:-1]) or "the top level"
            allowed = ", ".join(model.model_fields) if model is not None else "?"
            # Never its value: a mistyped key is often a secret's ('tokn: <the token>').
            lines.append(f"  {where}: unknown key {key!r} under {parent}; allowed keys: {allowed}")
            continue
        message = redact_text(str(error["msg"])).removeprefix("Value error, ")
        hint = ""
        if model is not None and key in model.model_fields:
            description = model.model_fields[key].description
            if description:
                hint = f" — {description}"
        lines.append(f"  {where}: {message} (got {shown}){hint}")
    return "\n".join(lines)
