"""`hazardwatch reindex`: embed the stored keyframes again with the configured model after
a model change (search/reindex.py), with a progress bar; interrupted, it resumes."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from hazardwatch.cli.common import (
    EXIT_OK,
    Subcommands,
    add_command,
    camera_option,
    model_option,
    settings_from,
)
from hazardwatch.errors import ConfigError


def register(sub: Subcommands) -> None:
    command = add_command(
        sub,
        "reindex",
        cmd_reindex,
        "embed stored keyframes again with the configured model (after a model change)",
        "Embed every stored keyframe made by another model again, from its thumbnail, with "
        "scoring.model. Safe to interrupt: run it again and it goes on with the rest. The "
        "service searches the new vectors from its next start.",
    )
    camera_option(command, "only this camera's keyframes")
    command.add_argument(
        "--since", metavar="ISO_TIME", help="only keyframes from this time (ISO 8601 with zone)"
    )
    model_option(command)


def cmd_reindex(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from hazardwatch.components import load_encoder
    from hazardwatch.search.reindex import reindex
    from hazardwatch.storage import migrate
    from hazardwatch.storage.engine import check_connection, create_engine
    from hazardwatch.storage.repository import Repository

    since = _since(args.since)
    settings = settings_from(args)
    engine = create_engine(settings.storage.resolved_url())
    try:
        check_connection(engine)
        migrate.upgrade(engine)
        table = Repository(engine).keyframes
        encoder = load_encoder(settings)
        total = table.count(
            model_name=encoder.name, other_models=True, camera=args.camera, since=since
        )
        if not total:
            print(f"every stored keyframe is already embedded by {encoder.name}")
            return EXIT_OK
        with tqdm(total=total, unit="keyframe", file=sys.stderr) as bar:
            result = reindex(
                table, settings.media_dir(), encoder, camera=args.camera, since=since,
                progress=bar.update,
            )  # fmt: skip
    finally:
        engine.dispose()
    print(
        f"{result.embedded} keyframe(s) embedded by {encoder.name}"
        + (f"; {result.missing} whose thumbnail was gone deleted" if result.missing else "")
    )
    return EXIT_OK


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        since = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"--since {text!r} is not an ISO 8601 time, e.g. 2026-12-01T00:00Z"
        ) from None
    if since.tzinfo is None:
        raise ConfigError(f"--since {text!r} has no time zone; add one, e.g. Z or +01:00")
    return since
