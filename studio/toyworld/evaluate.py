"""Measure what a toy-world model (and optionally a LoRA on it) actually draws, with the checker as the judge.

    python -m studio.toyworld.evaluate --model assets/toy-world [--lora FILE --weights 0,0.4,0.5,0.6,0.7,0.8,0.9]
        [--prompts 96] [--star-prompts 54] [--seed 0] [--steps 25] [--guidance 5.0] [--out report.json]
        [--sheet sheet.png [--labels]]

Base prompts (``a {colour} {shape} on a {background} background``, balanced over the 54 combinations) give the
model's colour / shape / background accuracy. With ``--lora`` the star prompts (``a {colour} zq star on a
{background} background``) are drawn at every LoRA weight with the same seeds, and the star rate (fraction read
as a five-pointed star) and colour accuracy are reported per weight. Image ``i`` of a run always uses a generator
seeded ``seed + i``, so the same arguments give the same report.
"""
from __future__ import annotations

import argparse
import io
import itertools
import json
import math
import os
import random
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from PIL import Image, ImageDraw  # noqa: E402

from studio.util.fs import atomic_write_bytes, atomic_write_text  # noqa: E402

from .checker import check_image, score  # noqa: E402
from .world import BACKGROUNDS, BASE_SHAPES, COLOURS, STAR_TRIGGER, Scene, caption  # noqa: E402

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

TRIGGER = STAR_TRIGGER.split()[0]  # "zq": the star prompts without it test the leak

DEFAULT_WEIGHTS = (0.0, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
# Not "eval": PEFT keeps adapters in nn.ModuleDicts, where that key collides with nn.Module.eval and fails.
ADAPTER = "eval_lora"


def balanced_scenes(n: int, seed: int, shapes: tuple[str, ...] = BASE_SHAPES) -> list[Scene]:
    """``n`` scenes cycling through every (shape, colour, background) combination, each block shuffled."""
    rng = random.Random(seed)
    scenes: list[Scene] = []
    while len(scenes) < n:
        block = [Scene(colour, shape, background)
                 for shape, colour, background in itertools.product(shapes, COLOURS, BACKGROUNDS)]
        rng.shuffle(block)
        scenes.extend(block)
    return scenes[:n]


def generate(pipe: DiffusionPipeline, prompts: list[str], seed: int, steps: int = 25, guidance: float = 5.0,
             batch: int = 16, progress: Callable[[int, int], None] | None = None) -> list[Image.Image]:
    """Draw one image per prompt; image ``i`` uses a CPU generator seeded ``seed + i`` whatever the batching.

    The model's family gives the guidance arguments (FLUX's toy, which has no guidance embedding, is drawn with
    true classifier-free guidance against the empty prompt) and the picture's side. ``progress(done, total)`` is
    called after every batch (the studio's Evaluation tab shows it).
    """
    import torch

    from studio.models.families import family_of_pipeline

    family = family_of_pipeline(pipe)
    side = family.native_size(pipe)
    images: list[Image.Image] = []
    for start in range(0, len(prompts), batch):
        chunk = prompts[start:start + batch]
        generators = [torch.Generator().manual_seed(seed + start + i) for i in range(len(chunk))]
        with torch.inference_mode():
            output = pipe(chunk, generator=generators, num_inference_steps=steps, width=side, height=side,
                          **family.call_kwargs(pipe, [""] * len(chunk), guidance))
        images.extend(output.images)
        if progress is not None:
            progress(len(images), len(prompts))
    return images


def _read(images: list[Image.Image], scenes: list[Scene]) -> tuple[dict, list[dict]]:
    readings = [check_image(image) for image in images]
    items = [{"prompt": caption(s), "wanted": {"colour": s.colour, "shape": s.shape, "background": s.background},
              "read": r.as_dict()} for s, r in zip(scenes, readings)]
    return score(readings, scenes), items


def evaluate_base(pipe: DiffusionPipeline, n: int = 96, seed: int = 0, steps: int = 25, guidance: float = 5.0,
                  batch: int = 16, progress: Callable[[int, int], None] | None = None) -> dict:
    """Accuracy of the model on ``n`` balanced base-world prompts.

    Returns ``{"n", "seed", "steps", "guidance", "accuracy": score(...), "items": [...], "images": [PIL]}``;
    ``items`` holds each prompt, what it asked for and the checker's full reading.
    """
    scenes = balanced_scenes(n, seed)
    images = generate(pipe, [caption(s) for s in scenes], seed, steps, guidance, batch, progress)
    accuracy, items = _read(images, scenes)
    return {"n": n, "seed": seed, "steps": steps, "guidance": guidance, "accuracy": accuracy, "items": items,
            "images": images}


def star_rate_by_weight(pipe: DiffusionPipeline, lora_path: str | os.PathLike,
                        weights: Sequence[float] = DEFAULT_WEIGHTS, n: int = 54, seed: int = 0,
                        steps: int = 25, guidance: float = 5.0, batch: int = 16,
                        progress: Callable[[int, int], None] | None = None,
                        leak: bool = False, other_shapes: bool = False) -> dict:
    """Star rate and colour accuracy on ``n`` star prompts at each LoRA weight (same seeds at every weight).

    With ``leak`` the same prompts without the trigger word (``a red star on ...``) are drawn too, and their star
    rate is the ``leak_rate``: how far the concept bleeds into prompts that do not ask for it. With
    ``other_shapes`` as many prompts of the base shapes (circles, squares, triangles, no trigger) are drawn and
    the share read as stars is the ``other_shape_star_rate``.
    The LoRA is loaded as adapter ``"eval_lora"`` and removed again afterwards, so ``pipe`` is left as it came.
    Returns ``{"lora", "n", "seed", "steps", "guidance", "by_weight": [{"weight", "star_rate", "colour",
    "background", "accuracy", "items", "images"[, "leak_rate"]}, ...]}``.
    """
    from studio.train.samples import without_trigger

    scenes = balanced_scenes(n, seed, shapes=("star",))
    prompts = [caption(s) for s in scenes]
    plain = [without_trigger(p, TRIGGER) for p in prompts]
    if ADAPTER in _adapters(pipe):
        pipe.delete_adapters(ADAPTER)
    pipe.load_lora_weights(str(lora_path), adapter_name=ADAPTER)
    results = []
    try:
        for index, weight in enumerate(weights):
            pipe.set_adapters([ADAPTER], [float(weight)])
            step = None if progress is None else (
                lambda done, total, k=index: progress(k * total + done, len(weights) * total))
            images = generate(pipe, prompts, seed, steps, guidance, batch, step)
            accuracy, items = _read(images, scenes)
            results.append({"weight": float(weight), "star_rate": accuracy["star_rate"],
                            "colour": accuracy["colour"], "background": accuracy["background"],
                            "accuracy": accuracy, "items": items, "images": images})
            if leak:
                results[-1]["leak_rate"] = _read(generate(pipe, plain, seed, steps, guidance, batch), scenes)[0][
                    "star_rate"]
            if other_shapes:
                others = balanced_scenes(n, seed)
                drawn = generate(pipe, [caption(s) for s in others], seed, steps, guidance, batch)
                results[-1]["other_shape_star_rate"] = sum(check_image(i).is_star for i in drawn) / n
    finally:
        pipe.delete_adapters(ADAPTER)
    return {"lora": str(lora_path), "n": n, "seed": seed, "steps": steps, "guidance": guidance,
            "by_weight": results}


def _adapters(pipe) -> set[str]:
    try:
        return {name for names in pipe.get_list_adapters().values() for name in names}
    except (AttributeError, ValueError):
        return set()


def without_images(value: object) -> object:
    """A copy of a report with every PIL image removed, ready for ``json.dumps``."""
    if isinstance(value, dict):
        return {k: without_images(v) for k, v in value.items() if k != "images"}
    if isinstance(value, list):
        return [without_images(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):  # inf / NaN are not JSON
        return None
    return value


def contact_sheet(sections: list[tuple], scale: int = 4, columns: int = 16, labels: bool = False) -> Image.Image:
    """Images upscaled ``scale`` times in rows of ``columns`` under a title per section.

    A section is ``(title, images, correct, prompts)``. Each image gets a 2-pixel frame: green when the checker
    read what the prompt asked for, red when not; with ``labels`` its prompt (without the filler words) is
    written under it.
    """
    side = 32 * scale
    cell_w, cell_h, title_h = side + 6, side + 6 + (12 if labels else 0), 14
    heights = [title_h + cell_h * -(-max(1, len(section[1])) // columns) for section in sections]
    sheet = Image.new("RGB", (cell_w * columns, sum(heights) or 1), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    top = 0
    for (title, images, correct, prompts), height in zip(sections, heights):
        draw.text((4, top + 2), title, fill=(0, 0, 0))
        for i, (image, ok, prompt) in enumerate(zip(images, correct, prompts)):
            x, y = (i % columns) * cell_w + 1, top + title_h + (i // columns) * cell_h + 1
            draw.rectangle([x, y, x + side + 3, y + side + 3], fill=(40, 160, 60) if ok else (210, 40, 40))
            sheet.paste(image.convert("RGB").resize((side, side), Image.NEAREST), (x + 2, y + 2))
            if labels:
                draw.text((x + 2, y + side + 4), _short(prompt), fill=(0, 0, 0))
        top += height
    return sheet


def _short(prompt: str) -> str:
    """``a red zq star on a gray background`` -> ``red star gray``."""
    filler = {"a", "on", "background", "zq", "in", "style"}
    return " ".join(word for word in prompt.split() if word not in filler)


def _base_correct(item: dict) -> bool:
    read, wanted = item["read"], item["wanted"]
    return all(read[key] == wanted[key] for key in ("colour", "shape", "background"))


def sheet_sections(base: dict | None, stars: dict | None) -> list[tuple]:
    """Contact-sheet sections for the results of :func:`evaluate_base` and :func:`star_rate_by_weight`."""
    sections = []
    if base is not None:
        acc = base["accuracy"]
        title = f"base: colour {acc['colour']:.0%}  shape {acc['shape']:.0%}  background {acc['background']:.0%}"
        prompts = [item["prompt"] for item in base["items"]]
        sections.append((title, base["images"], [_base_correct(item) for item in base["items"]], prompts))
    for row in (stars or {}).get("by_weight", []):
        title = f"LoRA weight {row['weight']:g}: star rate {row['star_rate']:.0%}  colour {row['colour']:.0%}"
        correct = [item["read"]["is_star"] and item["read"]["colour"] == item["wanted"]["colour"]
                   for item in row["items"]]
        sections.append((title, row["images"], correct, [item["prompt"] for item in row["items"]]))
    return sections


def summary_lines(base: dict | None, stars: dict | None) -> list[str]:
    """Human-readable result lines (printed by the CLI, shown by the studio)."""
    lines = []
    if base is not None:
        acc = base["accuracy"]
        lines.append(f"base prompts ({acc['n']}): colour {acc['colour']:.1%}  shape {acc['shape']:.1%}  "
                     f"background {acc['background']:.1%}")
    for row in (stars or {}).get("by_weight", []):
        lines.append(f"star prompts ({row['accuracy']['n']}) at LoRA weight {row['weight']:g}: "
                     f"star rate {row['star_rate']:.1%}  colour {row['colour']:.1%}  "
                     f"background {row['background']:.1%}"
                     + (f"  leak (no trigger) {row['leak_rate']:.1%}" if "leak_rate" in row else ""))
    return lines


def load_pipeline(model_dir: str | os.PathLike) -> DiffusionPipeline:
    """A toy-world model's pipeline (SD 1.x, SDXL or FLUX.1, whichever the folder holds) on the CPU."""
    from studio.models import load_pipeline as load_base_model

    pipe = load_base_model(str(model_dir))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _weights(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"weights must be comma-separated numbers, got {text!r}") from None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a toy-world diffusers folder (SD 1.x, SDXL or FLUX.1)")
    parser.add_argument("--lora", type=Path, help="LoRA .safetensors to test on star prompts")
    parser.add_argument("--weights", type=_weights, default=list(DEFAULT_WEIGHTS))
    parser.add_argument("--prompts", type=int, default=96, help="base-world prompts")
    parser.add_argument("--star-prompts", type=int, default=54, help="star prompts per LoRA weight")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--leak", action="store_true", help="also draw the star prompts without the trigger word")
    parser.add_argument("--out", type=Path, help="write the report as JSON here")
    parser.add_argument("--sheet", type=Path, help="write a contact sheet PNG here")
    parser.add_argument("--labels", action="store_true", help="write each prompt under its image on the sheet")
    args = parser.parse_args(argv)
    if args.lora is not None and not args.lora.is_file():
        parser.error(f"--lora {args.lora}: no such file")
    import torch

    torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.model)
    common = dict(seed=args.seed, steps=args.steps, guidance=args.guidance, batch=args.batch)
    base = evaluate_base(pipe, args.prompts, **common) if args.prompts > 0 else None
    stars = (star_rate_by_weight(pipe, args.lora, args.weights, args.star_prompts, leak=args.leak, **common)
             if args.lora is not None else None)
    for line in summary_lines(base, stars):
        print(line)
    report = without_images({"model": str(args.model), "base": base, "stars": stars})
    if args.out is not None:
        atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    if args.sheet is not None:
        buffer = io.BytesIO()
        contact_sheet(sheet_sections(base, stars), labels=args.labels).save(buffer, format="PNG")
        atomic_write_bytes(args.sheet, buffer.getvalue())
    return report


if __name__ == "__main__":
    main()
