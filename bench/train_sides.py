"""The two sides of the training benchmark, each in its own process, stepped in lock-step by the parent.

A side process sets itself up (timed), says ``ready``, then runs one optimizer step per ``step`` line on its stdin
and answers with the step's wall and CPU seconds (``time.process_time``, all threads); ``done`` makes it report
its peak RSS (``VmHWM``) and exit. The parent (``SideProcess``) sets the two sides up one after the other, then
alternates their steps (ours, reference, reference, ours, ...), so on a shared CPU whose load comes and goes both
sides' steps see the same load; a side waiting for its turn blocks on a read and uses no CPU. Protocol lines carry
a prefix; other output is ignored.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

PREFIX = "@@bench "
RANK, LR, SEED = 4, 1e-4, 42


def open_ours(model: str, data: str, resolution: int, batch: int, work: Path, variant: dict):
    """Our engine: ``build_setup`` (its two caches timed apart); returns (setup info, step function)."""
    from studio.config import load_config
    from studio.train import batches as batches_module
    from studio.train.loop import optimizer_step
    from studio.train.setup import build_setup

    cache = {"latent_cache_s": 0.0, "latent_cache_cpu_s": 0.0, "text_cache_s": 0.0, "text_cache_cpu_s": 0.0}

    def timed(cls, name: str, key: str) -> None:
        original = getattr(cls, name)

        def wrapper(*args, **kwargs):
            started, cpu = time.perf_counter(), time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                cache[f"{key}_s"] += time.perf_counter() - started
                cache[f"{key}_cpu_s"] += time.process_time() - cpu
        setattr(cls, name, wrapper)

    timed(batches_module.BatchSource, "fill_latent_cache", "latent_cache")
    timed(batches_module.TextConditioner, "fill_cache", "text_cache")
    config = load_config({"train_data_dir": data, "base_model": model, "resolution": resolution, "batch_size": batch,
                          "lora_rank": RANK, "learning_rate": LR, "seed": SEED, "max_steps": 10_000,
                          "output_dir": str(work / "out"), "mixed_precision": variant.get("precision", "no"),
                          "gradient_checkpointing": bool(variant.get("checkpointing")),
                          "base_weights": variant.get("base_weights", "auto")})
    started = time.perf_counter()
    setup = build_setup(config)
    info = {"setup_s": time.perf_counter() - started, "cache_s": cache["latent_cache_s"] + cache["text_cache_s"],
            "cache_cpu_s": cache["latent_cache_cpu_s"] + cache["text_cache_cpu_s"], **cache}
    return info, lambda step: optimizer_step(setup, step)[0]


def open_reference(model: str, data: str, resolution: int, batch: int, work: Path, variant: dict):
    """The diffusers-script way: VAE + text encoder(s) + UNet at every step (``train_reference.py``;
    ``train_reference_sdxl.py`` for a folder with a second text encoder; ``train_reference_flux.py`` for one with a
    transformer)."""
    from train_reference import batches, load_reference, reference_step

    if (Path(model) / "transformer").is_dir():
        return _open_reference_flux(model, data, resolution, batch, variant)
    if (Path(model) / "text_encoder_2").is_dir():
        from train_reference_sdxl import load_reference_sdxl as load_reference
        from train_reference_sdxl import reference_sdxl_step as reference_step
    started = time.perf_counter()
    parts = load_reference(model, data, resolution, batch, RANK, SEED, LR, variant.get("precision", "no"),
                           bool(variant.get("checkpointing")))
    info = {"setup_s": time.perf_counter() - started, "cache_s": 0.0, "cache_cpu_s": 0.0}
    stream = batches(parts)
    return info, lambda step: reference_step(parts, next(stream))


def _open_reference_flux(model: str, data: str, resolution: int, batch: int, variant: dict):
    from train_reference import batches
    from train_reference_flux import load_reference_flux, models_from_folder, reference_flux_step

    started = time.perf_counter()
    parts = load_reference_flux(models_from_folder(model), data, resolution, batch, RANK, SEED, LR,
                                variant.get("precision", "no"), bool(variant.get("checkpointing")))
    info = {"setup_s": time.perf_counter() - started, "cache_s": 0.0, "cache_cpu_s": 0.0}
    stream = batches(parts)
    return info, lambda step: reference_flux_step(parts, next(stream))


def _say(message: dict) -> None:
    sys.stdout.write(PREFIX + json.dumps(message) + "\n")
    sys.stdout.flush()


def serve(side: str, model: str, data: str, resolution: int, batch: int, work: Path, threads: int,
          variant: dict | None = None) -> None:
    """The side process: set up, then answer ``step`` / ``done`` lines from the parent.

    ``variant``: {"precision": "no"/"fp16"/"bf16", "checkpointing": bool}. On a GPU each step is timed up to a
    ``torch.cuda.synchronize()``, the allocator's cache is emptied after it (untimed: two processes share the GPU,
    SDXL at 1024 px in both would not fit beside each other's cached blocks), and ``done`` also reports the peak
    memory the GPU allocator handed out.
    """
    import torch

    from common import peak_rss_mb

    torch.set_num_threads(threads)
    cuda = torch.cuda.is_available()
    opener = open_ours if side == "ours" else open_reference
    info, step = opener(model, data, resolution, batch, work, variant or {})
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    _say({"ready": True, **info})
    number = 0
    for line in sys.stdin:
        if line.strip() == "step":
            started, cpu = time.perf_counter(), time.process_time()
            loss = float(step(number))
            if cuda:
                torch.cuda.synchronize()
            answer = {"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu, "loss": loss}
            if cuda:  # untimed: hand cached blocks back so the other side's process can use them while this one waits
                torch.cuda.empty_cache()
            _say(answer)
            number += 1
        elif line.strip() == "done":
            break
    vram = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    _say({"peak_rss_mb": peak_rss_mb(), "threads": torch.get_num_threads(), "peak_vram_mb": vram})


class SideProcess:
    """The parent's handle on one side process (stderr goes to a log file, quoted when the side fails)."""

    def __init__(self, script: Path, side: str, argv: list[str], work: Path):
        self.side = side
        self.log = work / f"{side}.log"
        self._log_handle = open(self.log, "w", encoding="utf-8")
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen([sys.executable, str(script), "--serve", side, *argv], cwd=script.parent.parent,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log_handle,
                                        text=True, env=env)

    def _read(self) -> dict:
        for line in self.process.stdout:
            if line.startswith(PREFIX):
                return json.loads(line[len(PREFIX):])
        self.process.wait()
        self._log_handle.flush()
        tail = self.log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"the {self.side} side stopped (exit status {self.process.returncode}):\n{tail}")

    def ask(self, command: str | None = None) -> dict:
        """Send ``command`` (if any) and return the side's next answer."""
        if command:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        """Wait briefly for a side that was told ``done``; kill one that is still running (after an error)."""
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log_handle.close()


def lockstep(start, names: list[str], warmup: int, timed: int) -> dict[str, dict]:
    """Start each side with ``start(name) -> SideProcess`` once the previous one is ready (so set-ups do not compete),
    then alternate their steps; returns each side's results."""
    sides, results = {}, {}
    try:
        for name in names:
            sides[name] = start(name)
            results[name] = {**sides[name].ask(), "step_s": [], "step_cpu_s": [], "losses": []}
        for number in range(warmup + timed):
            for name in names if number % 2 == 0 else names[::-1]:
                answer = sides[name].ask("step")
                results[name]["losses"].append(answer["loss"])
                if number >= warmup:
                    results[name]["step_s"].append(answer["seconds"])
                    results[name]["step_cpu_s"].append(answer["cpu_seconds"])
        for name in names:
            results[name].update(sides[name].ask("done"))
    finally:
        for side in sides.values():
            side.close()
    return results
