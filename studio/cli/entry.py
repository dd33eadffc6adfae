"""The ``studio.py`` command line: the parser every verb registers into, and ``main``.

Without a command it opens the studio in the browser (``cmd_studio``); each verb group is a module of this
package with ``register(subparsers)``, which sets the ``handler`` its sub-commands run.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
from pathlib import Path

from studio.cli.console import print_error
from studio.cli.exits import EXIT_OK, EXIT_USER_ERROR

# The verb groups, in the order ``--help`` lists their sub-commands.
COMMAND_MODULES: tuple[str, ...] = ("studio.cli.train", "studio.cli.config", "studio.cli.caption", "studio.cli.data",
                                   "studio.cli.evaluate", "studio.cli.lora")


def cmd_studio(args) -> int:
    """No command: open the studio (gradio is imported only now, so the CLI stays fast)."""
    from studio.ui.launch import LaunchOptions, launch

    try:
        options = LaunchOptions(args.host, args.port, Path(args.workspace), args.share, args.auth or "",
                                tuple(args.data_dir or ()), args.remote_rules, args.max_upload_mb)
        launch(options)
    except ValueError as error:
        print_error(error)
        return EXIT_USER_ERROR
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="studio.py",
        description="LoRA Studio: from a folder of pictures to a tested Stable Diffusion LoRA. "
        "Without a command it opens the studio in your browser.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (the next free one is used if it is busy)")
    parser.add_argument("--workspace", default="workspace", help="folder for runs, grids and exported configs")
    parser.add_argument("--share", action="store_true", help="also make a temporary public link (always behind a login)")
    parser.add_argument("--auth", metavar="USER:PASSWORD",
                        help="require this login (generated for --share and non-loopback hosts; 12+ characters there)")
    parser.add_argument("--data-dir", action="append", metavar="DIR[:rw]",
                        help="a folder remote users may read besides the workspace (':rw': also write); repeatable")
    parser.add_argument("--remote-rules", action="store_true",
                        help="apply the remote-user rules on this machine too (try what a share-link user can do)")
    parser.add_argument("--max-upload-mb", type=int, default=2048, metavar="MB",
                        help="largest file the page accepts as an upload (default 2048)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


class _NoTorchvisionFallbackNotice(logging.Filter):
    """Drops transformers' notice that an image processor falls back to its PIL version without torchvision.

    diffusers imports CLIP's and SigLIP's image processors with every pipeline, so each command that loads a model
    printed two such lines; the studio never uses torchvision, and the PIL versions are what it wants. Every other
    record of that logger still shows.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed); falling back" not in record.getMessage()


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: no spin-waiting threads on shared CPUs
    logging.getLogger("transformers.utils.import_utils").addFilter(_NoTorchvisionFallbackNotice())
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        return cmd_studio(args)
    return args.handler(args)
