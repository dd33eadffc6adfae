"""Measure the peak memory of one VAE encode on the CPU, to calibrate ``studio/train/memory.py``.

    python bench/vae_encode_memory.py                 # the table below, each case in a fresh process
    python bench/vae_encode_memory.py --one tiny 256 2  # one case: prints the JSON line

Each case runs in its own process: the VAE (random weights, the toy-world or the shipped SD 1.5 config) is built,
a warm-up encode at 32 px runs, then the resident set size (RSS) is read and one ``vae.encode`` of ``n`` pictures
of ``size`` x ``size`` runs under ``torch.no_grad``. The peak is the process's ``ru_maxrss`` after the encode
minus the RSS before it (torch's CPU allocations are invisible to tracemalloc, RSS sees them). The table shows
the measured bytes per input pixel next to the model of ``memory.encode_peak_bytes``.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CASES = [("tiny", 64, 1), ("tiny", 256, 1), ("tiny", 512, 1), ("tiny", 512, 4), ("tiny", 1024, 1),
         ("tiny", 2048, 1), ("sd15", 128, 1), ("sd15", 256, 1), ("sd15", 256, 4), ("sd15", 512, 1),
         ("sd15", 768, 1)]


def _rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


def vae_config(name: str) -> dict:
    if name == "tiny":
        from studio.toyworld.architecture import vae_config as tiny

        return tiny()
    values = json.loads((REPO / "studio/models/sd15/vae/config.json").read_text())
    return {k: v for k, v in values.items() if not k.startswith("_")}


def measure(name: str, size: int, count: int) -> dict:
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    config = vae_config(name)
    vae = AutoencoderKL(**config).eval()
    with torch.no_grad():
        vae.encode(torch.zeros(1, 3, 32, 32))
        pixels = torch.rand(count, 3, size, size) * 2 - 1
        before = _rss()
        vae.encode(pixels).latent_dist.mean.sum().item()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    from studio.train.memory import encode_peak_bytes

    model = encode_peak_bytes(config, size, size, count, dtype_bytes=4)
    return {"vae": name, "size": size, "pictures": count, "measured_mb": round(peak / 2**20, 1),
            "measured_b_per_px": round(peak / (size * size * count), 1), "model_mb": round(model / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--one", nargs=3, metavar=("VAE", "SIZE", "N"))
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), int(args.one[2]))))
        return
    print("| VAE | size | pictures | measured peak MB | bytes / input pixel | model MB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, size, count in CASES:
        done = subprocess.run([sys.executable, __file__, "--one", name, str(size), str(count)], capture_output=True,
                              text=True, check=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"| {name} | {size} | {count} | {row['measured_mb']} | {row['measured_b_per_px']} | {row['model_mb']} |",
              flush=True)


if __name__ == "__main__":
    main()
