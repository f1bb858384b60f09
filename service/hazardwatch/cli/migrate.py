"""`hazardwatch migrate`: bring the database schema to a revision (Alembic)."""

from __future__ import annotations

import argparse

from hazardwatch.cli.common import EXIT_OK, Subcommands, add_command, settings_from
from hazardwatch.redact import redact_url


def register(sub: Subcommands) -> None:
    migrate = add_command(
        sub, "migrate", cmd_migrate, "upgrade the database schema to the latest revision"
    )
    migrate.add_argument("--database-url", metavar="URL", help="override storage.database_url")
    migrate.add_argument("--revision", default="head", help="target revision (default: head)")
    migrate.add_argument("--downgrade", metavar="REV", help="downgrade to REV instead (e.g. base)")


def cmd_migrate(args: argparse.Namespace) -> int:
    from hazardwatch.storage import migrate
    from hazardwatch.storage.engine import check_connection, create_engine

    overrides: dict[str, object] = {}
    if args.database_url:
        overrides["storage"] = {"database_url": args.database_url}
    settings = settings_from(args, **overrides)
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
