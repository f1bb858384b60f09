"""Checking a configuration before running it: `config check` (validate, print with
secrets masked) and `cameras` (list, and with `--probe` open each once)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from hazardwatch.capture.sources import SourceSpec
from hazardwatch.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    Subcommands,
    add_command,
    settings_from,
)
from hazardwatch.errors import SourceError
from hazardwatch.redact import redact_text, redact_url


def register(sub: Subcommands) -> None:
    config = sub.add_parser("config", help="inspect the configuration")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    add_command(
        config_sub,
        "check",
        cmd_config_check,
        "validate and print the effective configuration (secrets masked)",
    )
    cameras = add_command(
        sub,
        "cameras",
        cmd_cameras,
        "list the configured cameras with their URLs masked; --probe opens each once",
    )
    cameras.add_argument(
        "--probe",
        action="store_true",
        help="open each camera once: codec, resolution and fps, or why it failed "
        "(authentication, refused, no answer, unknown path); exit 1 when any failed",
    )
    cameras.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="seconds per camera (10)"
    )


def cmd_config_check(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    source = args.config or ("hazardwatch.yaml" if Path("hazardwatch.yaml").is_file() else None)
    print(
        f"# effective configuration ({source or 'built-in defaults'} + environment); secrets masked"
    )
    print(yaml.safe_dump(settings.redacted(), sort_keys=False, default_flow_style=None), end="")
    # What only shows once ${ENV} credentials are filled in (a '/' or '@' in a password
    # breaks the URL): `run` would skip such a camera and report it; here it is an error.
    problems = []
    exposure = settings.api.exposure()
    if exposure is not None:
        problems.append(exposure)
    for camera in settings.cameras:
        try:
            SourceSpec.parse(camera.url.get_secret_value(), camera.rtsp_transport)
        except SourceError as exc:
            problems.append(f"cameras[{camera.name}].url: {exc}")
    if problems:
        print("# problems to fix:", *problems, sep="\n#   ", file=sys.stderr)
        return EXIT_USAGE
    print(f"# OK: {len(settings.cameras)} camera(s) configured", file=sys.stderr)
    return EXIT_OK


def cmd_cameras(args: argparse.Namespace) -> int:
    """List the configured cameras (URLs masked); with --probe, open each once."""
    from hazardwatch.capture.probe import probe

    settings = settings_from(args)
    if not settings.cameras:
        print("no camera is configured (cameras: in the config file)", file=sys.stderr)
        return EXIT_FAILURE
    failed = 0
    for camera in settings.cameras:
        url = camera.url.get_secret_value()
        state = "enabled" if camera.enabled else "disabled"
        try:
            spec = SourceSpec.parse(url, camera.rtsp_transport)
        except SourceError as exc:
            print(f"{camera.name}  invalid  {redact_url(url)}  {state}")
            if args.probe:
                print(f"  probe: FAILED: {redact_text(str(exc))}")
                failed += 1
            continue
        print(f"{camera.name}  {spec.kind}  {spec.display}  {state}")
        if args.probe:
            result = probe(spec, args.timeout)
            print(f"  probe: {'ok' if result.ok else 'FAILED'}: {result.detail}")
            failed += not result.ok
    return EXIT_FAILURE if failed else EXIT_OK
