"""Demo datasets for the toy world: the folders a new user trains a first LoRA on.

    python -m studio.toyworld.demo --out assets/demo-datasets [--seed 0]

writes ``star/`` (20 stars, trigger ``zq star``), ``striped/`` (20 striped circles/squares/triangles, trigger
``zq striped style``) and ``priors/`` (20 base-world pictures with their ordinary captions, for a later
"prior images" option). Each is a folder of PNGs plus ``metadata.csv`` (``filename,prompt``). Every colour and
background appears in every set; the output is the same byte for byte on every run with the same seed.
"""
from __future__ import annotations

import argparse
import csv
import io
import itertools
import random
from pathlib import Path

from studio.util.fs import atomic_write_bytes, atomic_write_text
from studio.util.paths import repo_root

from .world import (
    BACKGROUNDS, BASE_SHAPES, COLOURS, STAR_TRIGGER, STRIPED_TRIGGER, Scene, caption, random_scene, render,
)

ASSETS = repo_root() / "assets" / "demo-datasets"
DEMO_DATASETS: dict[str, Path] = {"star": ASSETS / "star", "striped": ASSETS / "striped"}
DEMO_TRIGGERS: dict[str, str] = {"star": STAR_TRIGGER, "striped": STRIPED_TRIGGER}
PRIOR_DATASET = ASSETS / "priors"
DEMO_SIZE = 20

# name -> (file prefix, shapes, style)
_RECIPES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "star": ("star", ("star",), "solid"),
    "striped": ("striped", BASE_SHAPES, "striped"),
    "priors": ("prior", BASE_SHAPES, "solid"),
}


def plan_scenes(n: int, rng: random.Random, shapes: tuple[str, ...], style: str) -> list[Scene]:
    """``n`` scenes whose (colour, background) pairs run through all 18 combinations before any repeats.

    Shapes cycle independently through a shuffled order, so each shape meets many colours; size and position are
    random as in :func:`world.random_scene`.
    """
    pairs: list[tuple[str, str]] = []
    while len(pairs) < n:
        block = list(itertools.product(COLOURS, BACKGROUNDS))
        rng.shuffle(block)
        pairs.extend(block)
    shape_order = list(shapes)
    rng.shuffle(shape_order)
    scenes = []
    for i, (colour, background) in enumerate(pairs[:n]):
        shape = shape_order[i % len(shape_order)]
        scenes.append(random_scene(rng, (shape,), style=style, colour=colour, background=background))
    return scenes


def _write_folder(out_dir: Path, prefix: str, scenes: list[Scene]) -> Path:
    """PNGs ``{prefix}_00.png`` ... and metadata.csv; older ``{prefix}_*.png`` files in the folder are removed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(f"{prefix}_*.png"):
        stale.unlink()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["filename", "prompt"])
    width = max(2, len(str(len(scenes) - 1)))
    for i, scene in enumerate(scenes):
        name = f"{prefix}_{i:0{width}d}.png"
        png = io.BytesIO()
        render(scene).save(png, format="PNG")
        atomic_write_bytes(out_dir / name, png.getvalue())
        writer.writerow([name, caption(scene)])
    atomic_write_text(out_dir / "metadata.csv", buffer.getvalue())
    return out_dir


def demo_scenes(name: str, seed: int = 0, n: int = DEMO_SIZE) -> list[Scene]:
    """The scenes of demo dataset ``name`` ("star", "striped" or "priors") for ``seed``."""
    if name not in _RECIPES:
        raise ValueError(f"unknown demo dataset {name!r}; choose one of {', '.join(_RECIPES)}")
    _, shapes, style = _RECIPES[name]
    return plan_scenes(n, random.Random(f"{name}:{seed}"), shapes, style)


def write_demo_dataset(name: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Write demo dataset ``name`` ("star" or "striped", 20 images) into the folder ``out_dir``; returns it."""
    if name not in DEMO_DATASETS:
        raise ValueError(f"unknown demo dataset {name!r}; choose one of {', '.join(DEMO_DATASETS)}")
    return _write_folder(Path(out_dir), _RECIPES[name][0], demo_scenes(name, seed))


def write_prior_dataset(out_dir: str | Path, n: int = DEMO_SIZE, seed: int = 0) -> Path:
    """Regularisation ("prior") images: ``n`` solid base-world pictures with their ordinary captions."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    return _write_folder(Path(out_dir), _RECIPES["priors"][0], demo_scenes("priors", seed, n))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ASSETS, help="parent folder (default: assets/demo-datasets)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--priors", type=int, default=DEMO_SIZE, help="number of prior images")
    args = parser.parse_args(argv)
    for name in DEMO_DATASETS:
        print(f"wrote {write_demo_dataset(name, args.out / name, args.seed)}")
    print(f"wrote {write_prior_dataset(args.out / 'priors', args.priors, args.seed)}")


if __name__ == "__main__":
    main()
