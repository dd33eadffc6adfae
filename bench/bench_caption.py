"""Batched vs one-at-a-time BLIP captioning on the same model, at two sizes; writes BENCHMARKS.md ## Captioning.

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE python bench/bench_caption.py [--quick] [--no-write]

Both models have random weights (nothing is downloaded): a tiny BLIP (1 vision + 1 text layer, width 32, 32 px)
saved and loaded back through ``load_captioner``, and one shaped like BLIP base (``BlipConfig()`` defaults: ViT-B/16
at 384 px, 12-layer text decoder, 224 M parameters) built in memory. Both modes must give the same captions (the
table says whether they did); words per caption shows how much decoding each image got. ``--quick`` runs the tiny
model only.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from studio.caption import Captioner, load_captioner  # noqa: E402

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
MAX_NEW_TOKENS = 20
SECTION = "## Captioning"


def _tokenizer(folder: Path, words: list[str]):
    from transformers import BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer.from_pretrained(str(folder))  # transformers 5 ignores vocab_file=: load the folder
    tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    return tokenizer


def _text_ids(tokenizer) -> dict:
    return dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.sep_token_id,
                pad_token_id=tokenizer.pad_token_id, sep_token_id=tokenizer.sep_token_id)


def tiny_captioner(work: Path) -> Captioner:
    """The tests' tiny BLIP, saved with save_pretrained and loaded back like a user's model folder."""
    import torch
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipProcessor
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    tokenizer = _tokenizer(work / "tiny-vocab", SPECIAL + "a the of on in red blue cat dog girl street night".split())
    text = dict(hidden_size=32, encoder_hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=64, projection_dim=32, **_text_ids(tokenizer))
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                  patch_size=16, projection_dim=32, initializer_range=0.02)
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(BlipConfig(text_config=text, vision_config=vision, projection_dim=32,
                                                    image_text_hidden_size=32))
    model.save_pretrained(work / "tiny-blip")
    BlipProcessor(BlipImageProcessorPil(size={"height": 32, "width": 32}), tokenizer).save_pretrained(work / "tiny-blip")
    return load_captioner(str(work / "tiny-blip"), device="cpu")


def base_captioner(work: Path) -> Captioner:
    """A random model with BLIP base's shapes and a 30,524-token BERT vocabulary, kept in memory."""
    import torch
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipProcessor
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    words = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words += [f"w{i}" for i in range(30522 - len(words))]
    tokenizer = _tokenizer(work / "base-vocab", words)
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(BlipConfig(text_config=_text_ids(tokenizer))).eval()
    processor = BlipProcessor(BlipImageProcessorPil(size={"height": 384, "width": 384}), tokenizer)
    return Captioner(model, processor, "cpu", torch.float32, "random BLIP-base-shaped model (in memory)")


def _images(count: int, size: int):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(count)]


def measure(captioner: Captioner, count: int, batch_size: int, repeats: int, image_size: int) -> dict:
    """Images per second captioning ``count`` images batched and one at a time (median of ``repeats``)."""
    images = _images(count, image_size)
    captioner.caption(images[:2], batch_size=2, max_new_tokens=MAX_NEW_TOKENS)  # warm-up
    timings: dict[str, list[float]] = {"batched": [], "single": []}
    captions = {}
    for _ in range(repeats):
        for mode, size in (("batched", batch_size), ("single", 1)):
            start = time.perf_counter()
            captions[mode] = captioner.caption(images, batch_size=size, max_new_tokens=MAX_NEW_TOKENS)
            timings[mode].append(time.perf_counter() - start)
    batched, single = statistics.median(timings["batched"]), statistics.median(timings["single"])
    return {"images": count, "batch_size": batch_size, "repeats": repeats,
            "batched_s": batched, "single_s": single, "batched_ips": count / batched, "single_ips": count / single,
            "speedup": single / batched, "same_captions": captions["batched"] == captions["single"],
            "words_per_caption": statistics.mean(len(text.split()) for text in captions["batched"]),
            "params_m": sum(p.numel() for p in captioner.model.parameters()) / 1e6}


def run(quick: bool = False) -> dict:
    """Measure the tiny model (and, unless ``quick``, the base-shaped one); returns the rows and the machine."""
    import torch
    import transformers

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        plans = [("tiny BLIP (32 px)", tiny_captioner, 32, 8, 3, 64)]
        if not quick:
            plans.append(("BLIP-base-shaped (384 px)", base_captioner, 8, 8, 1, 384))
        for name, build, count, batch_size, repeats, image_size in plans:
            started = time.perf_counter()
            captioner = build(work)
            row = {"model": name, "build_s": time.perf_counter() - started}
            row.update(measure(captioner, count, batch_size, repeats, image_size))
            rows.append(row)
            del captioner
    return {"rows": rows, "machine": {
        "date": datetime.date.today().isoformat(), "platform": platform.platform(), "cpu": platform.processor() or
        platform.machine(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "load_average": os.getloadavg()[0], "command": "OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE "
        f"python bench/bench_caption.py{' --quick' if quick else ''}"}}


def markdown(result: dict) -> str:
    """The ``## Captioning`` section for BENCHMARKS.md."""
    machine = result["machine"]
    lines = [SECTION, "",
             "Batched vs one-at-a-time BLIP captioning (`Captioner.caption`, greedy, "
             f"at most {MAX_NEW_TOKENS} new tokens per caption) on the same model, random weights.", "",
             "| model | params | images | batch | batched img/s | one-at-a-time img/s | speed-up | same captions | "
             "words/caption |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for row in result["rows"]:
        lines.append(f"| {row['model']} | {row['params_m']:.2f} M | {row['images']} | {row['batch_size']} | "
                     f"{row['batched_ips']:.2f} | {row['single_ips']:.2f} | {row['speedup']:.2f}× | "
                     f"{'yes' if row['same_captions'] else 'no'} | {row['words_per_caption']:.1f} |")
    lines += ["", f"Machine: {machine['platform']}, {machine['cpu']}, {machine['cores']} cores visible, "
              f"{machine['torch_threads']} torch thread(s), no GPU; torch {machine['torch']}, transformers "
              f"{machine['transformers']}; {machine['date']}; load average {machine['load_average']:.1f} at the start "
              "(the CPU is shared with other virtual machines, so absolute numbers are noisy; the ratio is what to "
              "read). Tiny model: median of 3 runs; base-shaped: one run of 8 images (building and running it on "
              "2 shared cores takes about a minute).", "",
              "Reading: on the CPU a base-sized model is compute-bound, so batching gains little; the tiny model is "
              "dominated by per-call overhead, so batching gains a lot. No GPU was available, so the GPU case "
              "(where batching matters most) is not measured here.", "",
              f"Command: `{machine['command']}`", ""]
    return "\n".join(lines)


def write_section(text: str, path: Path = REPO / "BENCHMARKS.md") -> Path:
    """Replace (or append) only the ``## Captioning`` section, re-reading the file just before writing."""
    from studio.util.fs import atomic_write_text

    current = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    lines = current.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.strip() == SECTION), None)
    if start is None:
        updated = current.rstrip("\n") + "\n\n" + text
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        tail = "".join(lines[end:])
        updated = "".join(lines[:start]) + text + ("\n" + tail if tail else "")
    return atomic_write_text(path, updated)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the tiny model only")
    parser.add_argument("--no-write", action="store_true", help="print, do not update BENCHMARKS.md")
    args = parser.parse_args(argv)
    text = markdown(run(quick=args.quick))
    print(text)
    if not args.no_write:
        print(f"updated {write_section(text)}", file=sys.stderr)


if __name__ == "__main__":
    main()
