"""Loading the configuration: one YAML file (its `${NAME}` references filled from the
environment) plus HAZARDWATCH_… environment overrides, nested with `__`. Every problem
becomes a ConfigError that names the key, the value and what is allowed."""

from __future__ import annotations

import os
import re
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from hazardwatch.errors import ConfigError
from hazardwatch.settings.problems import format_validation_error, models_in
from hazardwatch.settings.schema import ENV_PREFIX, Settings

DEFAULT_CONFIG_FILE = Path("hazardwatch.yaml")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand_env(value: Any, where: str = "") -> Any:
    """Replace ${NAME} in every string of the YAML tree with the environment's value."""
    if isinstance(value, dict):
        return {k: _expand_env(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str):

        def _sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(
                    f"{where}: refers to ${{{name}}} but the environment variable {name} is "
                    "not set; export it or write the value in the file"
                )
            return os.environ[name]

        return _ENV_REF.sub(_sub, value)
    return value


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a configuration file into a mapping, with errors that say what to fix."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist; pass an existing file to --config"
        ) from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"config file {path} is not valid YAML{at}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping of sections (cameras:, motion:, …), "
            f"not a {type(data).__name__}"
        )
    expanded: dict[str, Any] = _expand_env(data)
    return expanded


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Load settings from `path` (default ./hazardwatch.yaml when present) and the environment.

    `overrides` are top-level sections merged over the file (used by CLI flags).
    Raises ConfigError with one line per problem, naming the key, the value and what is allowed.
    """
    check_env_names(os.environ)
    if path is None and DEFAULT_CONFIG_FILE.is_file():
        path = DEFAULT_CONFIG_FILE
    data = read_yaml(path) if path is not None else {}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    try:
        return Settings(**data)
    except ValidationError as exc:
        source = f"config file {path}" if path else "configuration"
        raise ConfigError(format_validation_error(exc, source)) from None


def check_env_names(environ: typing.Mapping[str, str]) -> None:
    """Reject HAZARDWATCH_… variables that name no setting: a typo must not pass silently."""
    problems = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name.startswith(f"{ENV_PREFIX}TEST_"):
            continue
        parts = name.removeprefix(ENV_PREFIX).lower().split("__")
        model: type[BaseModel] | None = Settings
        for part in parts:
            if model is None:
                break
            field = model.model_fields.get(part)
            if field is None:
                allowed = ", ".join(model.model_fields)
                problems.append(f"  {name}: {part!r} is not a setting here; allowed: {allowed}")
                break
            models = models_in(field.annotation)
            model = (
                models[0] if models and typing.get_origin(field.annotation) is not list else None
            )
    if problems:
        raise ConfigError("environment overrides are invalid:\n" + "\n".join(problems))
