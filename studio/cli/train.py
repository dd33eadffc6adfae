"""``python studio.py train``: train a LoRA from a YAML config, headless — the same engine the studio uses.

Exit codes: 0 done, 2 a problem with what the user passed (config, data, model, resume), 3 training failed,
130 stopped by the user (a checkpoint was saved first).
"""
from __future__ import annotations

import os
import sys

from studio.cli.config import load_cli_config
from studio.cli.console import graceful_stop
from studio.cli.console import print_error as _print_error
from studio.cli.exits import EXIT_FAILED, EXIT_OK, EXIT_STOPPED, EXIT_USER_ERROR
from studio.cli.progress import _print_json_event, _ProgressBar, _training_commands, is_main_process
from studio.train.user_errors import user_errors as _user_errors


def register(subparsers) -> None:
    """Add the ``train`` sub-command to the studio's argument parser."""
    train = subparsers.add_parser("train", help="train a LoRA from a YAML config (flat or nested form)")
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


def cmd_train(args) -> int:
    if args.num_processes > 1 and "LOCAL_RANK" not in os.environ:
        return _launch_processes(args)
    from studio.train.lock import leave_process_group

    try:
        return _train_in_this_process(args)
    finally:
        leave_process_group()


def _train_in_this_process(args) -> int:
    """The run itself, in this process (one of several under ``accelerate launch``, or the only one)."""
    from studio.train import TrainingFailed, run_training

    main_process = is_main_process()  # one progress bar and one set of messages, from the main process
    if not main_process:
        sys.stdout = open(os.devnull, "w")
    try:
        config = load_cli_config(args.config, args.set or [], args.resume)
    except _user_errors() as error:
        _print_error(error)
        return EXIT_USER_ERROR
    commands = _training_commands(args.stop_file, args.command_file)
    with graceful_stop("stopping after this step and saving a checkpoint", on_stop=commands.stop):
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
    if result.status == "stopped":
        print(f"stopped at step {result.step}; resume with --resume {result.last_checkpoint}", file=sys.stderr)
        return EXIT_STOPPED
    print(f"run folder: {result.run_dir}")
    print(f"diffusers LoRA: {result.diffusers_lora or 'none (diffusers cannot hold a dora_axis: webui DoRA)'}")
    if result.webui_lora is None and result.diffusers_lora is not None and _for_webuis(result.diffusers_lora):
        print(f"LoRA for ComfyUI / Forge: {result.diffusers_lora} (the diffusers file; A1111 has no FLUX.1)")
    else:
        print(f"LoRA for ComfyUI / A1111 / Forge: {result.webui_lora}")
    return EXIT_OK


def _for_webuis(diffusers_file) -> bool:
    """Whether the run's diffusers file is also the one ComfyUI and Forge load (a FLUX.1 LoRA)."""
    from studio.lora.info import lora_family

    return lora_family(diffusers_file) == "flux"
