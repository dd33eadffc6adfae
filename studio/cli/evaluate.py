"""``python studio.py grid …`` (an X/Y grid of a LoRA) and ``python studio.py evaluate RUN_DIR`` (grid + verdict).

Exit codes: 0 done, 2 a problem with what was passed (LoRA, model, prompt, weights), 130 stopped with Ctrl-C
(what was drawn so far is written).
"""
from __future__ import annotations

from pathlib import Path

from studio.cli.console import CountBar, graceful_stop, print_error
from studio.cli.exits import EXIT_OK, EXIT_STOPPED, EXIT_USER_ERROR


def _common(parser, prompt_required: bool) -> None:
    """The grid options both commands share."""
    parser.add_argument("--base", default="", metavar="MODEL",
                        help="base model (diffusers folder, .safetensors, hub id); default: the run's base model")
    parser.add_argument("--prompt", action="append", required=prompt_required, default=None, metavar="P",
                        help="a prompt (repeatable); <lora:name:0.5> tags add other LoRAs to every cell")
    parser.add_argument("--weights", default="0.4:0.9:0.1",
                        help="LoRA weights: start:stop:step or a list (0.4:0.9:0.1)")
    parser.add_argument("--reference", action="store_true", help="also show the weight-0 (base model) column")
    parser.add_argument("--negative", default="", metavar="N", help="negative prompt")
    parser.add_argument("--steps", type=int, default=25, help="sampling steps (25)")
    parser.add_argument("--guidance", type=float, default=5.0, help="classifier-free guidance scale (5.0)")
    parser.add_argument("--sampler", default="auto",
                        help="auto (DDIM; Euler for FLUX.1), ddim, euler, euler_a, dpm++_2m, dpm++_2m_karras, unipc, …")
    parser.add_argument("--trigger", default="", help="trigger word: every prompt is also drawn without it")
    parser.add_argument("--lora-dir", action="append", default=[], metavar="DIR",
                        help="folder where <lora:name:w> names are looked up (repeatable)")
    parser.add_argument("--clip-model", default="", metavar="PATH_OR_ID", help="CLIP model for the text-image score")
    parser.add_argument("--checker", default="auto", choices=("auto", "on", "off"),
                        help="read cells with the toy-world checker (auto: on toy-world pictures)")
    parser.add_argument("--width", type=int, default=0, help="picture width (default: the model's)")
    parser.add_argument("--height", type=int, default=0, help="picture height (default: the model's)")
    parser.add_argument("--batch-size", type=int, default=8, help="pictures per pipeline call (8)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def register(subparsers) -> None:
    """Add the ``grid`` and ``evaluate`` sub-commands to the studio's argument parser."""
    grid = subparsers.add_parser("grid", help="draw a LoRA at several weights x prompts x seeds (x checkpoints)")
    grid.add_argument("--lora", required=True, metavar="FILE_OR_RUN",
                      help="LoRA .safetensors, checkpoint folder, run folder, or a name found in --lora-dir")
    _common(grid, prompt_required=True)
    grid.add_argument("--seeds", default="0", help="seeds: 0,1,2 or 0-3 (0)")
    grid.add_argument("--checkpoints", default="", metavar="all|LIST",
                      help="'all' = a row group per checkpoint of the run; or comma-separated checkpoint folders")
    grid.add_argument("--out", required=True, metavar="DIR", help="folder for grid.png, cells/ and grid.json")
    grid.set_defaults(handler=cmd_grid)

    evaluate = subparsers.add_parser("evaluate", help="grid every checkpoint of a run and write evaluation.md")
    evaluate.add_argument("run_dir", metavar="RUN_DIR", help="a training run folder")
    _common(evaluate, prompt_required=False)
    evaluate.add_argument("--seeds", default="0-3", help="seeds: 0,1,2 or 0-3 (0-3)")
    evaluate.add_argument("--checkpoints", default="all", metavar="all|LIST", help="row groups (all)")
    evaluate.add_argument("--out", default="", metavar="DIR", help="grid folder (default RUN_DIR/evaluation)")
    evaluate.set_defaults(handler=cmd_evaluate)


def _spec(args, lora: str, prompts: list[str]):
    from studio.eval.spec import GridSpec, parse_seeds, parse_weights

    checkpoints = [c.strip() for c in args.checkpoints.split(",") if c.strip()]
    return GridSpec(
        lora=lora, base_model=args.base, prompts=prompts, seeds=parse_seeds(args.seeds),
        weights=parse_weights(args.weights), include_reference=args.reference, checkpoints=checkpoints,
        negative_prompt=args.negative, steps=args.steps, guidance=args.guidance, sampler=args.sampler,
        trigger=args.trigger, lora_dirs=list(args.lora_dir), clip_model=args.clip_model, checker=args.checker,
        width=args.width, height=args.height, batch_size=args.batch_size, device=args.device,
    )


def _grid_user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions of a grid that mean "fix what you passed" (LoRA, model, prompt, weights)."""
    from studio.eval.spec import EvalError
    from studio.lora import LoraFormatError
    from studio.models import ModelLoadError

    return (EvalError, ModelLoadError, LoraFormatError, FileNotFoundError)


def _run(spec, out_dir: Path, quiet: bool):
    """``render_grid`` with a progress bar and Ctrl-C as a clean stop."""
    from studio.eval.grid import render_grid

    with CountBar("image", quiet) as progress, graceful_stop("stopping after this batch") as stop:
        return render_grid(spec, out_dir, progress=progress, should_stop=stop.is_set)


def _print_summary(result) -> None:
    """Where the files went, the prompts as drawn, then the numbers of the rows the verdict reads."""
    from studio.eval.spec import weight_label
    from studio.eval.verdict import rows_read

    print(f"grid: {result.grid_png}")
    print(f"cells: {result.grid_png.parent / 'cells'} ({len(result.cells)} pictures)")
    print(f"index: {result.index_json}")
    metrics = rows_read(result.metrics)
    if metrics.get("trigger_placement"):
        print(metrics["trigger_placement"])
    for prompt in dict.fromkeys(cell.prompt for cell in result.cells):
        print(f"prompt: {prompt}")
    leak = ((metrics.get("trigger") or {}).get("without") or {}).get("concept_rate_by_weight")
    rows = f" ({metrics['rows']})" if metrics["rows"] else ""
    for values, name in ((metrics.get("change_by_weight"), "change from weight 0"),
                         (metrics.get("concept_rate_by_weight"), "concept rate"),
                         (metrics.get("clip_score_by_weight"), "CLIP score"),
                         (metrics.get("seed_spread_by_weight"), "seed spread"),
                         (leak, "concept rate without the trigger (leak)")):
        if values:
            label = name if "leak" in name else name + rows
            print(f"{label}: " + "  ".join(f"{weight_label(w)}={v:.3g}" for w, v in values.items()))


def cmd_grid(args) -> int:
    try:
        result = _run(_spec(args, args.lora, args.prompt), Path(args.out), args.quiet)
    except _grid_user_errors() as error:
        print_error(error)
        return EXIT_USER_ERROR
    _print_summary(result)
    return EXIT_STOPPED if result.stopped else EXIT_OK


def default_prompts(run_dir: Path, count: int = 2) -> list[str]:
    """The first ``count`` distinct captions of the run's training data, for ``evaluate`` without ``--prompt``."""
    from studio.eval.spec import EvalError
    from studio.eval.trigger import run_captions

    prompts = list(dict.fromkeys(run_captions(run_dir)[0]))[:count]
    if not prompts:
        raise EvalError(f"{run_dir}: its training captions cannot be read, so there is no default prompt: "
                        "pass --prompt.")
    return prompts


def cmd_evaluate(args) -> int:
    from studio.eval.loss import diagnose_run
    from studio.eval.report import write_evaluation
    from studio.eval.resolve import is_run_dir
    from studio.eval.spec import EvalError
    from studio.eval.verdict import make_verdict

    run_dir = Path(args.run_dir)
    try:
        if not is_run_dir(run_dir):
            raise EvalError(f"{run_dir} is not a training run folder (no config.yaml with a LoRA, loss.jsonl or "
                            "checkpoints): pass the folder `studio.py train` printed.")
        prompts = args.prompt or default_prompts(run_dir)
        result = _run(_spec(args, str(run_dir), prompts), Path(args.out) if args.out else run_dir / "evaluation",
                      args.quiet)
    except _grid_user_errors() as error:
        print_error(error)
        return EXIT_USER_ERROR
    diagnosis = diagnose_run(run_dir)
    verdict = make_verdict(result.metrics, diagnosis)
    report = write_evaluation(run_dir, result, diagnosis, verdict=verdict)
    _print_summary(result)
    print(f"loss curve: {diagnosis.kind} - {diagnosis.message}")
    print(f"recommended weight: {verdict.weight_range}; best checkpoint: {verdict.best_checkpoint}")
    print(f"evaluation: {report}")
    return EXIT_STOPPED if result.stopped else EXIT_OK
