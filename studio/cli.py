"""Headless entry points: ``python studio.py train | check-config | inspect …`` — the same engine the studio uses.

Exit codes: 0 done, 2 a problem with what the user passed (config, data, model, resume), 3 training failed,
130 stopped by the user (a checkpoint was saved first).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from studio.train.events import (
    CheckpointEvent, DoneEvent, LogEvent, StartEvent, StepEvent, TrainEvent, WarningEvent,
)

if TYPE_CHECKING:
    from studio.train.control import TrainingCommands

EXIT_OK, EXIT_USER_ERROR, EXIT_FAILED, EXIT_STOPPED = 0, 2, 3, 130

# Modules that add their own sub-commands: each has ``register(subparsers)`` and sets ``handler`` defaults.
COMMAND_MODULES: tuple[str, ...] = ("studio.caption.commands", "studio.data.commands", "studio.eval.commands",
                                   "studio.lora.commands")


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "fix your input", not "the trainer broke"."""
    from studio.config import ConfigError
    from studio.data import DatasetError
    from studio.models import ModelLoadError
    from studio.train.adapters import AdapterError
    from studio.train.lock import RunFolderError
    from studio.train.memory import NotEnoughMemory
    from studio.train.resume import ResumeError

    return (ConfigError, DatasetError, ModelLoadError, ResumeError, AdapterError, RunFolderError, NotEnoughMemory,
            FileNotFoundError)


def _print_error(error: BaseException) -> None:
    """One readable message (config and dataset errors already list every problem in their text)."""
    print(f"error: {error}", file=sys.stderr)


def load_cli_config(path: str | None, overrides: list[str], resume: str | None):
    from studio.config import load_config

    config = load_config(Path(path) if path else {}, overrides=overrides)
    if resume:
        config = load_config({}, base=config, overrides=[f"resume={resume}"])
    return config


class _ProgressBar:
    """tqdm progress for training events, with loss and learning rate in the postfix."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar = None

    def __call__(self, event: TrainEvent) -> None:
        if self.quiet:
            if isinstance(event, (WarningEvent, CheckpointEvent, DoneEvent)):
                print(_event_line(event), file=sys.stderr)
            return
        match event:
            case StartEvent():
                from tqdm import tqdm

                self.bar = tqdm(total=event.total_steps, initial=event.step, unit="step", dynamic_ncols=True)
            case StepEvent() if self.bar is not None:
                self.bar.update(event.step - self.bar.n)
                self.bar.set_postfix(loss=f"{event.loss:.4f}", lr=f"{event.lr:.2e}", epoch=event.epoch)
            case WarningEvent() | CheckpointEvent() | LogEvent():
                text = _event_line(event)
                (self.bar.write(text, file=sys.stderr) if self.bar is not None else print(text, file=sys.stderr))
            case DoneEvent() if self.bar is not None:
                self.bar.close()


def _event_line(event: LogEvent | WarningEvent | CheckpointEvent | DoneEvent) -> str:
    """``[warning] …``, ``[log] …``, ``[checkpoint] <folder>``, ``[done] finished``."""
    match event:
        case CheckpointEvent():
            return f"[checkpoint] {event.path}"
        case DoneEvent():
            return f"[done] {event.status}"
        case _:
            return f"[{event.kind}] {event.message}"


def _print_json_event(event: TrainEvent) -> None:
    """``--json-events``: one JSON line per event on stdout, flushed (the studio reads them from a pipe)."""
    import json

    print(json.dumps(event.to_dict()), flush=True)


def _training_commands(stop_file: str | None, command_file: str | None) -> TrainingCommands:
    """Ctrl-C's commands; with ``--stop-file`` / ``--command-file`` also the ones another process writes (the
    command file is read by the main process only: the run shares its requests with the other processes)."""
    from studio.train.control import FileCommands, TrainingCommands

    if not (stop_file or command_file):
        return TrainingCommands()
    return FileCommands(stop_file, command_file, follow_file=_is_main_process())


def _launch_processes(args) -> int:
    """``--num-processes N``: the same command under ``accelerate launch`` (data-parallel, one process per device)."""
    import socket

    from studio.train.resume import check_resume_folder_free

    try:  # a run folder in use or nothing to resume: said here once, not by each process through the launcher
        check_resume_folder_free(load_cli_config(args.config, args.set or [], args.resume))
    except _user_errors() as error:
        _print_error(error)
        return EXIT_USER_ERROR

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
               str(args.num_processes), "--num_machines", "1", "--main_process_port", str(port),
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "studio", "train"]
    if args.config:
        command += ["--config", args.config]
    for item in args.set or []:
        command += ["--set", item]
    if args.resume:
        command += ["--resume", args.resume]
    if args.quiet:
        command.append("--quiet")
    if args.json_events:
        command.append("--json-events")
    if args.stop_file:
        command += ["--stop-file", args.stop_file]
    if args.command_file:
        command += ["--command-file", args.command_file]
    import subprocess

    return subprocess.call(command)


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def cmd_train(args) -> int:
    from studio.train import TrainingFailed, run_training

    if args.num_processes > 1 and "LOCAL_RANK" not in os.environ:
        return _launch_processes(args)
    main_process = _is_main_process()  # one progress bar and one set of messages, from the main process
    if not main_process:
        sys.stdout = open(os.devnull, "w")
    try:
        config = load_cli_config(args.config, args.set or [], args.resume)
    except _user_errors() as error:
        _print_error(error)
        return EXIT_USER_ERROR
    commands = _training_commands(args.stop_file, args.command_file)

    def request_stop(signum, _frame):
        if commands.stop_requested:
            raise KeyboardInterrupt
        print("\nstopping after this step and saving a checkpoint (Ctrl-C again to abort)", file=sys.stderr)
        commands.stop()

    previous = signal.signal(signal.SIGINT, request_stop)
    try:
        emit = (_print_json_event if args.json_events else _ProgressBar(args.quiet)) if main_process else (
            lambda event: None)
        result = run_training(config, emit=emit, commands=commands)
    except _user_errors() as error:
        if main_process:
            _print_error(error)
        return EXIT_USER_ERROR
    except TrainingFailed as error:
        _print_error(error)
        if error.run_dir:
            print(f"the run folder keeps what was saved: {error.run_dir}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        signal.signal(signal.SIGINT, previous)
    if result.status == "stopped":
        print(f"stopped at step {result.step}; resume with --resume {result.last_checkpoint}", file=sys.stderr)
        return EXIT_STOPPED
    print(f"run folder: {result.run_dir}")
    print(f"diffusers LoRA: {result.diffusers_lora or 'none (diffusers cannot hold a dora_axis: webui DoRA)'}")
    print(f"LoRA for ComfyUI / A1111 / Forge: {result.webui_lora}")
    return EXIT_OK


def cmd_check_config(args) -> int:
    from studio.config import check_paths, dump_config

    try:
        config = load_cli_config(args.config, args.set or [], None)
    except _user_errors() as error:
        _print_error(error)
        return EXIT_USER_ERROR
    print(dump_config(config), end="")
    notes = list(getattr(config, "notes", [])) + check_paths(config)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"{args.config}: valid" + (f", {len(notes)} path note(s)" if notes else ""), file=sys.stderr)
    return EXIT_OK


def cmd_studio(args) -> int:
    """No command: open the studio (gradio is imported only now, so the CLI stays fast)."""
    from studio.ui.launch import LaunchOptions, launch

    try:
        options = LaunchOptions(args.host, args.port, Path(args.workspace), args.share, args.auth or "",
                                tuple(args.data_dir or ()), args.remote_rules, args.max_upload_mb)
        launch(options)
    except ValueError as error:
        _print_error(error)
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
    train = sub.add_parser("train", help="train a LoRA from a YAML config (flat or nested form)")
    train.add_argument("--config", help="YAML config; without it the defaults (embedded toy-world model) apply")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config key (repeatable)")
    train.add_argument("--resume", metavar="latest|PATH", help="continue a run: 'latest', a run folder or a checkpoint")
    train.add_argument("--quiet", action="store_true", help="no progress bar, only warnings and checkpoints")
    train.add_argument("--num-processes", type=int, default=1, metavar="N",
                       help="data-parallel training on N devices through accelerate (N GPUs; on a CPU, N processes)")
    train.add_argument("--json-events", action="store_true",
                       help="print every training event as one JSON line on stdout instead of the progress bar")
    train.add_argument("--stop-file", metavar="PATH",
                       help="stop after the current step (saving a checkpoint) as soon as this file exists")
    train.add_argument("--command-file", metavar="PATH",
                       help="a file another program appends requests to, one a line: 'save' (a checkpoint now), "
                            "'sample' (the samples now) or 'stop'")
    train.set_defaults(handler=cmd_train)
    check = sub.add_parser("check-config", help="print the normalised config, or what is wrong with it")
    check.add_argument("config", help="YAML config file")
    check.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one config key (repeatable)")
    check.set_defaults(handler=cmd_check_config)
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
