"""The demo star LoRA trained with and without prior images, measured the same way: star rate and leak per weight.

    python -m studio.toyworld.leak_report [--preset presets/demo/demo-star.yaml] [--star-prompts 54]
        [--out assets/toy-world/demo_star_eval.json] [--work DIR] [--weights 0,0.9]
        [--variant 'NAME={"max_steps": 1800}' ...]

Both runs use the preset as it is, except that the second sets ``prior_count: 0``. Each LoRA is drawn on the star
prompts (``a {colour} zq star on a {background} background``) and on the same prompts without the trigger word
(``a red star on ...``) at every weight, with fixed seeds; the checker reads the pictures. The training wall time of
each run is recorded too, wall clock and CPU seconds. Prompts of the other shapes without the trigger word
(``a red circle on ...``) are drawn as well: the share read as stars is how far the star spreads to them. Every
toy world works: ``--preset presets/demo/demo-star-sdxl.yaml --model assets/toy-world-sdxl``, or ``demo-star-flux.yaml``
with ``assets/toy-world-flux``. ``--variant`` replaces
the two runs with named sets of config changes (a JSON object each; ``NAME={}`` is the preset as it is), which is how
a preset is tuned.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from .evaluate import DEFAULT_WEIGHTS, _weights, load_pipeline, star_rate_by_weight, without_images

VARIANTS = (("with prior images", {}), ("without prior images", {"prior_count": 0}))


def train(preset: Path, changes: dict, out_dir: Path) -> tuple[Path, float, float]:
    """Train the preset with ``changes`` into ``out_dir``; returns (the diffusers LoRA file, training seconds,
    CPU seconds of this process)."""
    from studio.config import load_config
    from studio.train import run_training

    overrides = [f"output_dir={out_dir}", "sample_steps=0", "validation_steps=0", "save_steps=0"]
    overrides += [f"{key}={json.dumps(value)}" for key, value in changes.items()]
    config = load_config(preset, overrides=overrides)
    started, cpu = time.perf_counter(), time.process_time()
    result = run_training(config)
    return result.diffusers_lora, time.perf_counter() - started, time.process_time() - cpu


def _variant(text: str) -> tuple[str, dict]:
    name, _, changes = text.partition("=")
    try:
        parsed = json.loads(changes)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"--variant {name}: the changes are not JSON ({error.msg})") from None
    if not name or not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError('a variant is NAME={"key": value, ...}')
    return name, parsed


def table_lines(report: dict) -> list[str]:
    """A Markdown table: one row per variant and measure, one column per weight."""
    weights = [row["weight"] for row in report["variants"][0]["stars"]["by_weight"]]
    lines = ["| LoRA | measure | " + " | ".join(f"{w:g}" for w in weights) + " |",
             "|---|---|" + "---:|" * len(weights)]
    for variant in report["variants"]:
        rows = variant["stars"]["by_weight"]
        for key, label in (("star_rate", "stars with `zq`"), ("leak_rate", "stars without `zq` (leak)"),
                           ("other_shape_star_rate", "stars on other shapes without `zq`"),
                           ("colour", "colour right")):
            if key not in rows[0]:  # reports written before a measure existed
                continue
            cells = " | ".join(f"{row[key]:.0%}" for row in rows)
            lines.append(f"| {variant['label']} ({variant['train_seconds']:.0f} s) | {label} | {cells} |")
    return lines


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", type=Path, default=Path("presets/demo/demo-star.yaml"))
    parser.add_argument("--model", type=Path, default=Path("assets/toy-world"))
    parser.add_argument("--star-prompts", type=int, default=54)
    parser.add_argument("--out", type=Path, help="write the report as JSON here")
    parser.add_argument("--work", type=Path, help="where the runs go (default: a temporary folder)")
    parser.add_argument("--weights", type=_weights, default=list(DEFAULT_WEIGHTS))
    parser.add_argument("--variant", type=_variant, action="append",
                        help='NAME={"key": value}: train the preset with these changes (repeatable)')
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    work = args.work or Path(tempfile.mkdtemp(prefix="leak-report-"))
    report = {"preset": str(args.preset), "model": str(args.model), "variants": []}
    for number, (label, changes) in enumerate(args.variant or VARIANTS):
        lora, seconds, cpu_seconds = train(args.preset, changes, work / f"run-{number}")
        stars = star_rate_by_weight(load_pipeline(args.model), lora, args.weights, args.star_prompts, leak=True,
                                    other_shapes=True)
        report["variants"].append({"label": label, "changes": changes, "lora": str(lora),
                                   "train_seconds": round(seconds, 1), "train_cpu_seconds": round(cpu_seconds, 1),
                                   "stars": without_images(stars)})
        _publish(report, args.out)  # after every run: a tuning session is long and may be stopped
    return report


def _publish(report: dict, out: Path | None) -> None:
    for line in table_lines(report):
        print(line, flush=True)
    if out is not None:
        from studio.util.fs import atomic_write_text

        atomic_write_text(out, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
