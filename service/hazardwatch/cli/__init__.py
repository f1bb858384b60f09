"""The `hazardwatch` command: parse arguments, dispatch to one subcommand. Each module of
this package registers its own subcommands, in the order a user meets them: running the
service, checking its configuration and outputs, tuning and calibrating a camera,
evaluating offline."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hazardwatch import __version__
from hazardwatch.cli import (
    calibrate,
    config,
    evaluate,
    migrate,
    motion,
    outputs,
    run,
    search,
    users,
)
from hazardwatch.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from hazardwatch.errors import ConfigError, HazardwatchError
from hazardwatch.redact import redact_text

COMMANDS = (run, migrate, config, users, outputs, motion, calibrate, evaluate, search)


def cmd_version(args: argparse.Namespace) -> int:
    print(f"hazardwatch {__version__}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hazardwatch",
        description="Real-time CCTV hazard monitoring: motion-gated CLIP scoring, "
        "temporal event detection, alerts.",
    )
    parser.add_argument(
        "--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="override log_level"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    version = sub.add_parser("version", help="print the version", description="print the version")
    version.set_defaults(handler=cmd_version)
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(f"hazardwatch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except HazardwatchError as exc:
        print(f"hazardwatch: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:  # unwritable output paths and the like
        print(f"hazardwatch: {redact_text(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
