"""``python studio.py check-config FILE``: the normalised config, or what is wrong with it; and how every verb that
trains loads its config (``--config``, ``--set``, ``--resume``).

Exit codes: 0 valid, 2 what is wrong with it (every problem, each naming its key).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from studio.cli.console import print_error
from studio.cli.exits import EXIT_OK, EXIT_USER_ERROR
from studio.train.user_errors import user_errors

if TYPE_CHECKING:  # the config module is imported only when a command runs
    from studio.config import TrainConfig


def load_cli_config(path: str | None, overrides: list[str], resume: str | None) -> TrainConfig:
    """The config file (the defaults without one), then each ``--set KEY=VALUE``, then ``--resume``."""
    from studio.config import load_config

    config = load_config(Path(path) if path else {}, overrides=overrides)
    if resume:
        config = load_config({}, base=config, overrides=[f"resume={resume}"])
    return config


def cmd_check_config(args) -> int:
    from studio.config import check_paths, dump_config

    try:
        config = load_cli_config(args.config, args.set or [], None)
    except user_errors() as error:
        print_error(error)
        return EXIT_USER_ERROR
    print(dump_config(config), end="")
    notes = list(getattr(config, "notes", [])) + check_paths(config)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"{args.config}: valid" + (f", {len(notes)} path note(s)" if notes else ""), file=sys.stderr)
    return EXIT_OK


def register(subparsers) -> None:
    """Add the ``check-config`` sub-command to the studio's argument parser."""
    check = subparsers.add_parser("check-config", help="print the normalised config, or what is wrong with it")
    check.add_argument("config", help="YAML config file")
    check.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config key (repeatable)")
    check.set_defaults(handler=cmd_check_config)
