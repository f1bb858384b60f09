"""The `hazardwatch` command: parse arguments, load settings, dispatch to one subcommand."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from hazardwatch import __version__
from hazardwatch.errors import ConfigError, HazardwatchError
from hazardwatch.redact import configure_logging, redact_text, redact_url
from hazardwatch.settings import Settings, load_settings

log = logging.getLogger("hazardwatch")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2  # bad configuration or arguments


def _settings(args: argparse.Namespace, **overrides: object) -> Settings:
    settings = load_settings(args.config, **overrides)
    configure_logging(args.log_level or settings.log_level)
    return settings


# ---------------------------------------------------------------------------- commands


def cmd_version(args: argparse.Namespace) -> int:
    print(f"hazardwatch {__version__}")
    return EXIT_OK


def cmd_config_check(args: argparse.Namespace) -> int:
    settings = _settings(args)
    source = args.config or ("hazardwatch.yaml" if Path("hazardwatch.yaml").is_file() else None)
    print(
        f"# effective configuration ({source or 'built-in defaults'} + environment); secrets masked"
    )
    print(yaml.safe_dump(settings.redacted(), sort_keys=False, default_flow_style=None), end="")
    print(f"# OK: {len(settings.cameras)} camera(s) configured", file=sys.stderr)
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    from hazardwatch.storage import migrate
    from hazardwatch.storage.engine import check_connection, create_engine

    overrides: dict[str, object] = {}
    if args.database_url:
        overrides["storage"] = {"database_url": args.database_url}
    settings = _settings(args, **overrides)
    url = settings.storage.resolved_url()
    engine = create_engine(url)
    try:
        check_connection(engine)
        if args.downgrade:
            migrate.downgrade(engine, args.downgrade)
        else:
            migrate.upgrade(engine, args.revision)
        current = migrate.current_revision(engine)
        head = migrate.head_revision(engine)
    finally:
        engine.dispose()
    state = "head" if current == head else f"head is {head}"
    print(f"database {redact_url(url)} is at revision {current or 'base'} ({state})")
    return EXIT_OK


def cmd_motion(args: argparse.Namespace) -> int:
    import json

    import cv2

    from hazardwatch.motion.gate import GateParams
    from hazardwatch.motion.scan import scan_video

    cv2.setNumThreads(1)  # cameras (here: frames) are the parallelism; OpenCV's pool spins
    settings = _settings(args)
    masks: list[list[tuple[float, float]]] = []
    if args.camera:
        matches = [c for c in settings.cameras if c.name == args.camera]
        if not matches:
            names = ", ".join(c.name for c in settings.cameras) or "none configured"
            raise ConfigError(f"--camera {args.camera!r} is not in the configuration ({names})")
        masks = matches[0].masks
    params = GateParams(
        threshold=settings.motion.threshold,
        min_area=settings.motion.min_area,
        downscale_width=settings.motion.downscale_width,
        blur_kernel=settings.motion.blur_kernel,
        dilate_iterations=settings.motion.dilate_iterations,
        lighting_guard=settings.motion.lighting_guard,
    )
    report = scan_video(args.video, params, masks, args.preview)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report))
    summary = report["summary"]
    share = summary["motion_frames"] / summary["frames"] if summary["frames"] else 0.0
    print(
        f"{args.video}: {summary['frames']} frames, {summary['motion_frames']} with motion "
        f"({share:.0%}), gated at {summary['fps']} frames/s"
    )
    return EXIT_OK


# ---------------------------------------------------------------------------- parser


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

    def add(
        name: str, handler: Callable[[argparse.Namespace], int], help_: str
    ) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_, description=help_)
        command.set_defaults(handler=handler)
        return command

    def config_option(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--config",
            type=Path,
            metavar="FILE",
            help="YAML settings (default: ./hazardwatch.yaml when present)",
        )

    add("version", cmd_version, "print the version")

    migrate = add("migrate", cmd_migrate, "upgrade the database schema to the latest revision")
    config_option(migrate)
    migrate.add_argument("--database-url", metavar="URL", help="override storage.database_url")
    migrate.add_argument("--revision", default="head", help="target revision (default: head)")
    migrate.add_argument("--downgrade", metavar="REV", help="downgrade to REV instead (e.g. base)")

    motion = add(
        "motion", cmd_motion, "run the motion gate over a video file to tune its thresholds"
    )
    motion.add_argument("video", type=Path, metavar="VIDEO", help="video file to scan")
    config_option(motion)
    motion.add_argument("--camera", metavar="NAME", help="use this configured camera's masks")
    motion.add_argument("--json", type=Path, metavar="OUT", help="write per-frame results here")
    motion.add_argument("--preview", type=Path, metavar="OUT.mp4", help="write an annotated video")

    config = sub.add_parser("config", help="inspect the configuration")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = config_sub.add_parser(
        "check", help="validate and print the effective configuration (secrets masked)"
    )
    check.set_defaults(handler=cmd_config_check)
    config_option(check)
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
