"""Headless entry points: ``python studio.py train | check-config | caption | lint | scan | grid | evaluate |
inspect`` — the same engine the studio uses, called as the operator.

One module per verb group (``train``, ``config``, ``caption``, ``data``, ``evaluate``, ``lora``), each with
``register(subparsers)``; ``entry`` builds the parser and holds ``main``; ``exits`` is the one set of exit codes;
``console`` has what the verbs share on the terminal (the error line, a progress bar, ``graceful_stop``).
The engine packages never import this package.
"""
from studio.cli.entry import COMMAND_MODULES, build_parser, main
from studio.cli.exits import EXIT_FAILED, EXIT_FINDINGS, EXIT_OK, EXIT_STOPPED, EXIT_USER_ERROR

__all__ = ["COMMAND_MODULES", "EXIT_FAILED", "EXIT_FINDINGS", "EXIT_OK", "EXIT_STOPPED", "EXIT_USER_ERROR",
           "build_parser", "main"]
