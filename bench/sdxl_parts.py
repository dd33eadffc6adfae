"""Where an SDXL-shaped training step's time goes, part by part, in one process (no model folder, no data set).

    OMP_WAIT_POLICY=PASSIVE python bench/sdxl_parts.py [--width 1.0] [--threads 2] [--repeats 3] [--resolution 512]

Builds the four SDXL models (``sdxl_shapes.py``) with random weights at ``--width`` in memory and times, batch 1,
each repeat: the VAE encode of one picture (V), both text encoders on one caption (T), both under ``no_grad``,
and one LoRA training step of the UNet (U: forward with the time ids and pooled embedding, MSE, backward, clip,
AdamW; the same LoRA and optimizer as ``bench_train.py``). Our engine's step is U (latents and text outputs are
cached); the reference's is U + V + T, so (U + V + T) / U is the ratio the cache can give on this machine. The
first repeat is a warm-up; medians of the rest are printed with the peak RSS (one process, nothing else held),
which at ``--width 1`` also shows what one side of the benchmark would need at SDXL's real size.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]


def _timed(function) -> tuple[float, float]:
    """(wall s, CPU s) of ``function()``."""
    started, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - started, time.process_time() - cpu


def measure(width: float, threads: int, repeats: int, resolution: int) -> dict:
    import torch
    import torch.nn.functional as F

    from common import peak_rss_mb
    from sdxl_shapes import SD15, build_models
    from train_reference import add_lora
    from train_reference_sdxl import encode_prompt
    from transformers import CLIPTokenizer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    started = time.perf_counter()
    text_encoder, text_encoder_2, vae, unet = build_models(width)
    for model in (text_encoder, text_encoder_2, vae, unet):
        model.requires_grad_(False)
    params, optimizer = add_lora(unet, 4, 42, 1e-4, False)
    unet.train()
    build_s = time.perf_counter() - started
    tokenizers = [CLIPTokenizer.from_pretrained(str(SD15 / "tokenizer")) for _ in range(2)]
    pixels = torch.rand(1, 3, resolution, resolution) * 2 - 1
    side = resolution // 8
    time_ids = torch.tensor([[resolution, resolution, 0, 0, resolution, resolution]], dtype=torch.float32)

    def vae_part():
        with torch.no_grad():
            vae.encode(pixels).latent_dist.sample()

    def text_part():
        with torch.no_grad():
            encode_prompt([text_encoder, text_encoder_2], tokenizers, ["a red circle on a blue background"])

    with torch.no_grad():
        hidden, pooled = encode_prompt([text_encoder, text_encoder_2], tokenizers, ["a yellow star at night"])

    def unet_part():
        latents, noise = torch.randn(1, 4, side, side), torch.randn(1, 4, side, side)
        added = {"time_ids": time_ids, "text_embeds": pooled}
        prediction = unet(latents, torch.tensor([500]), hidden, added_cond_kwargs=added, return_dict=False)[0]
        F.mse_loss(prediction.float(), noise).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad()

    times = {name: [_timed(part) for _ in range(repeats)]
             for name, part in (("vae", vae_part), ("text", text_part), ("unet", unet_part))}
    return {"width": width, "threads": threads, "resolution": resolution, "build_s": build_s,
            "peak_rss_mb": peak_rss_mb(), "unet_parameters": sum(p.numel() for p in unet.parameters()),
            "times": times, **summary(times)}


def summary(times: dict) -> dict:
    """Medians after the warm-up (wall and CPU) and the ratio (U + V + T) / U on each."""
    median = {f"{name}_{kind}": statistics.median(t[index] for t in runs[1:] or runs)
              for name, runs in times.items() for index, kind in ((0, "s"), (1, "cpu_s"))}
    for kind in ("s", "cpu_s"):
        whole = median[f"unet_{kind}"] + median[f"vae_{kind}"] + median[f"text_{kind}"]
        median[f"ratio_{kind}"] = whole / median[f"unet_{kind}"]
    return median


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=512)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.width, args.threads, args.repeats, args.resolution), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
