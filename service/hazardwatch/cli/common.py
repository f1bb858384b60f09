"""What every subcommand shares: exit codes, the options that mean the same everywhere
(`--config`, `--model`, `--camera`), and loading the settings with logging set up."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from hazardwatch.errors import ConfigError
from hazardwatch.redact import configure_logging
from hazardwatch.settings import Settings, load_settings

if TYPE_CHECKING:
    from hazardwatch.settings import CameraSettings

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2  # bad configuration or arguments

# The bank that groups the rows of the shared hazard-scene matrices into classes.
HAZARD_SCENES_BANK = Path(
    str(resources.files("hazardwatch") / "config" / "eval" / "hazard-scenes.yaml")
)


# What `add_subparsers()` returns: where the command modules register their subcommands.
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_command(
    sub: Subcommands,
    name: str,
    handler: Callable[[argparse.Namespace], int],
    help_: str,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """A subcommand that reads the configuration (`--config`) and runs `handler(args)`."""
    command = sub.add_parser(name, help=help_, description=description or help_)
    command.set_defaults(handler=handler)
    config_option(command)
    return command


def config_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="YAML settings (default: ./hazardwatch.yaml when present)",
    )


def model_option(command: argparse.ArgumentParser) -> None:
    command.add_argument("--model", metavar="NAME_OR_PATH", help="override scoring.model")


def camera_option(command: argparse.ArgumentParser, help_: str, required: bool = False) -> None:
    command.add_argument("--camera", metavar="NAME", required=required, help=help_)


def settings_from(args: argparse.Namespace, **overrides: object) -> Settings:
    """The settings of `--config` (or ./hazardwatch.yaml, or the defaults) and the
    environment, with `overrides` on top and `--model` applied where the command has it;
    logging is configured from them."""
    if getattr(args, "model", None):
        overrides["scoring"] = {"model": args.model}  # no command overrides more of it
    settings = load_settings(args.config, **overrides)
    configure_logging(args.log_level or settings.log_level, settings.log_format)
    return settings


def configured_camera(settings: Settings, name: str) -> CameraSettings:
    """The configured camera `--camera` names, or a clear error listing those there are."""
    for camera in settings.cameras:
        if camera.name == name:
            return camera
    names = ", ".join(c.name for c in settings.cameras) or "none"
    raise ConfigError(f"--camera {name!r} is not configured; cameras: {names}")


def fmt(value: float | None, digits: int = 3) -> str:
    return "  -  " if value is None else f"{value:.{digits}f}"
