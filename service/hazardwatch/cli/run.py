"""The commands that run the service: `run` (the whole pipeline in one process) and the
three roles of the distributed pipeline, `capture`, `worker` and `events`."""

from __future__ import annotations

import argparse

from hazardwatch.cli.common import (
    EXIT_OK,
    Subcommands,
    add_command,
    model_option,
    settings_from,
)
from hazardwatch.errors import ConfigError
from hazardwatch.settings import load_settings

ROLES = (
    ("capture", "read this node's cameras and publish their gated frames to NATS"),
    ("worker", "score frames from NATS with CLIP and publish the scores"),
    ("events", "detect events from the scores in NATS; store, alert, serve the API"),
)


def register(sub: Subcommands) -> None:
    run = add_command(
        sub, "run", cmd_run, "run the monitoring pipeline until the sources end or a signal"
    )
    run.add_argument(
        "--source",
        action="append",
        metavar="PATH_OR_URL",
        help="a camera source (repeatable); replaces the configured cameras",
    )
    run.add_argument("--loop", action="store_true", help="loop --source files (demos)")
    model_option(run)
    run.add_argument("--database-url", metavar="URL", help="override storage.database_url")
    run.add_argument("--api-port", type=int, metavar="PORT", help="override api.port")
    run.add_argument("--no-api", action="store_true", help="run without the HTTP API")
    for role, text in ROLES:
        node = add_command(sub, role, cmd_role, text + " (needs broker.url)")
        node.set_defaults(role=role)
        node.add_argument(
            "--api-port",
            type=int,
            metavar="PORT",
            help="/healthz, /readyz and /metrics (events: the whole API) on this port; "
            "0 picks a free one (logged)",
        )


def cmd_run(args: argparse.Namespace) -> int:
    from hazardwatch.app import Service
    from hazardwatch.capture.native_log import NATIVE_STDERR
    from hazardwatch.components import cameras_from_sources
    from hazardwatch.lifecycle import install_signal_handlers

    overrides: dict[str, object] = {}
    if args.source:
        overrides["cameras"] = cameras_from_sources(args.source, args.loop)
    if args.model:  # in `overrides` too: a reload keeps it
        overrides["scoring"] = {"model": args.model}
    if args.database_url:
        overrides["storage"] = {"database_url": args.database_url}
    if args.api_port is not None or args.no_api:
        api: dict[str, object] = {"enabled": not args.no_api}
        if args.api_port is not None:
            api["port"] = args.api_port
        overrides["api"] = api
    settings = settings_from(args, **overrides)
    # SIGHUP re-reads the same file and environment, with the same command-line overrides.
    service = Service(settings, reload_settings=lambda: load_settings(args.config, **overrides))
    install_signal_handlers(service)
    # FFmpeg's and OpenCV's own messages: into each camera's last_error, not raw into stderr.
    NATIVE_STDERR.start()
    try:
        summary = service.run()
    finally:
        NATIVE_STDERR.stop()
    print(
        f"hazardwatch run: {summary.cameras} camera(s), {summary.frames_read} frames read, "
        f"{summary.frames_scored} scored, {summary.events} event(s), "
        f"{summary.queue_dropped} dropped from the queue, {summary.seconds:.1f} s"
    )
    return EXIT_OK


def cmd_role(args: argparse.Namespace) -> int:
    """`capture`, `worker` or `events`: one role of the distributed pipeline."""
    from hazardwatch.capture.native_log import NATIVE_STDERR
    from hazardwatch.lifecycle import install_signal_handlers
    from hazardwatch.roles import CaptureNode, EventsNode, WorkerNode, free_port

    overrides: dict[str, object] = {}
    if args.role == "events" and args.api_port is not None:
        port = args.api_port or free_port("127.0.0.1")  # 0: a free one, logged at start
        overrides["api"] = {"port": port}
    settings = settings_from(args, **overrides)
    if settings.broker.url is None:
        raise ConfigError(
            f"`hazardwatch {args.role}` needs NATS JetStream: set broker.url "
            "(nats://host:4222) in the config file or HAZARDWATCH_BROKER__URL"
        )
    node: CaptureNode | WorkerNode | EventsNode
    if args.role == "capture":
        # SIGHUP re-reads the same file and environment: cameras added, removed or changed.
        node = CaptureNode(
            settings,
            api_port=args.api_port,
            reload_settings=lambda: load_settings(args.config, **overrides),
        )
    elif args.role == "worker":
        node = WorkerNode(settings, api_port=args.api_port)
    else:
        node = EventsNode(settings)
    install_signal_handlers(node)
    NATIVE_STDERR.start()
    try:
        summary = node.run()
    finally:
        NATIVE_STDERR.stop()
    print(f"hazardwatch {args.role}: {summary}")
    return EXIT_OK
