"""The models and pictures the training benchmarks train on, each built in a child process.

    python bench/train_models.py --build toy|sd15|sdxl|flux --out FOLDER [--width W]

``toy``: the toy-world architecture with random weights. ``sd15``: UNet/VAE/text encoder from the shipped SD 1.5
configs. ``sdxl``: SDXL base 1.0's layout from ``sdxl_shapes.py`` at ``--width`` (see ``SDXL_WIDTH``). ``flux``:
FLUX.1-dev's layout from ``flux_shapes.py`` at ``FLUX_HEADS`` heads, with its text stand-ins. Each is saved
as a diffusers folder that our engine loads like a user's model; the pictures are generated 512 px PNGs.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

# Two processes (ours, the reference) hold the model side by side. At full width one process holds 13,671 MiB
# right after building the four models (measured, before any training step), two would need more than this
# machine's 23.5 GB, so the CPU benchmark uses half the channels (UNet 643 M parameters instead of 2,567 M).
SDXL_WIDTH = 0.5
# The CPU benchmark's FLUX.1-shaped model: FLUX.1-dev's layout (19 + 38 blocks, heads of 128) with 3 heads of its
# 24, a hidden width of 384 instead of 3,072 (transformer 188 M parameters instead of 11.9 B).
FLUX_HEADS = 3
CAPTIONS = ["a red circle on a blue background", "a green square in a field", "a yellow star at night",
            "a purple triangle on white"]


def prepare_toy(work: Path) -> tuple[str, str]:
    """(model folder, note): the embedded toy-world model, or its architecture with random weights."""
    from studio.models import default_model_path

    if (default_model_path() / "model_index.json").is_file():
        return str(default_model_path()), "embedded toy-world model"
    run_child(["--build", "toy", "--out", str(work / "toy-random")], timeout=600)
    return str(work / "toy-random"), "toy-world architecture, random weights (assets/toy-world not built yet)"


def build_model(kind: str, out: Path, width: float = SDXL_WIDTH) -> None:
    """Save a random-weight diffusers folder: the toy-world architecture, SD 1.5 or SDXL (at ``width``)."""
    import torch

    from studio.toyworld.pretrain import build_components, save_pipeline

    torch.manual_seed(0)
    if kind == "toy":
        save_pipeline(out, *build_components(out.parent / "toy-tokenizer"))
        return
    if kind == "sdxl":
        from sdxl_shapes import save_model

        save_model(out, width)
        return
    if kind == "flux":
        import flux_shapes

        flux_shapes.save_model(out, {**flux_shapes.DEV, "heads": FLUX_HEADS})
        return
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    configs = REPO / "studio" / "models" / "sd15"
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(configs / "unet"))
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(configs / "vae"))
    text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(configs / "text_encoder"))
    tokenizer = CLIPTokenizer.from_pretrained(configs / "tokenizer")
    scheduler = PNDMScheduler.from_pretrained(configs / "scheduler")
    save_pipeline(out, tokenizer, text_encoder, vae, unet, scheduler)


def generated_pictures(folder: Path, count: int = 4, size: int = 512) -> str:
    """``count`` generated pictures (a gradient, a disc, some noise) with captions in metadata.csv."""
    import csv

    import numpy as np
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with open(folder / "metadata.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "prompt"])
        for index in range(count):
            caption = f"{CAPTIONS[index % len(CAPTIONS)]}, picture {index}"
            ramp = np.linspace(0, 255, size, dtype=np.float32)
            pixels = np.stack([np.add.outer(ramp, ramp) / 2, np.tile(ramp, (size, 1)), np.full((size, size), 90.0)], -1)
            pixels = np.clip(pixels + rng.normal(0, 12, pixels.shape), 0, 255).astype(np.uint8)
            image = Image.fromarray(pixels)
            x, y = rng.integers(64, size - 192, 2)
            disc = [int(x), int(y), int(x) + 160, int(y) + 160]
            ImageDraw.Draw(image).ellipse(disc, fill=(200, 40 * index % 256, 60))
            image.save(folder / f"img_{index}.png")
            writer.writerow([f"img_{index}.png", caption])
    return str(folder)


def run_child(argv: list[str], timeout: float) -> None:
    """This script in a child process (the model's memory goes back to the system when it exits)."""
    command = [sys.executable, str(Path(__file__).resolve()), *argv]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} failed:\n{done.stderr[-3000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", choices=("toy", "sd15", "sdxl", "flux"), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--width", type=float, default=SDXL_WIDTH, help="SDXL channel scale (1 = the real model)")
    args = parser.parse_args(argv)
    build_model(args.build, args.out, args.width)
    return 0


if __name__ == "__main__":
    sys.exit(main())
