"""`hazardwatch user hash-password`: the scrypt hash an `api.users` entry's
`password_hash` holds, so the password itself never goes into a configuration file."""

from __future__ import annotations

import argparse
import getpass
import sys

from hazardwatch.cli.common import EXIT_OK, Subcommands
from hazardwatch.errors import ConfigError


def register(sub: Subcommands) -> None:
    user = sub.add_parser("user", help="API users of the review page")
    user_sub = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    hashing = user_sub.add_parser(
        "hash-password",
        help="print the password_hash of api.users for a password read from the terminal "
        "(asked twice) or from standard input",
        description="Prints scrypt$N$r$p$salt$hash for an api.users entry's password_hash. "
        "The password is read without echo from the terminal (twice), or as the first line "
        "of standard input (for scripts); it is never taken as an argument, which would "
        "leave it in the shell's history and the process list.",
    )
    hashing.set_defaults(handler=cmd_hash_password)


def cmd_hash_password(args: argparse.Namespace) -> int:
    from hazardwatch.api.accounts import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError("the two passwords differ; nothing was hashed")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 8:
        raise ConfigError("a password needs at least 8 characters")
    print(hash_password(password))
    return EXIT_OK
