"""How many CPU threads torch trains with: one for a small model, torch's default (one per core) for a large one.

A training step of a small model is a long chain of small operations; with several threads each one is split
and the threads spend more time waking and waiting for each other than computing (the studio runs with
``OMP_WAIT_POLICY=PASSIVE``, so waiting threads sleep). ``bench/thread_crossover.py`` measures where one thread
stops being faster: on this project's 2-core machine near 26 M UNet parameters at the demo's 32 px and batch 8
(BENCHMARKS.md, "CPU threads by model size"), so ``SMALL_MODEL_PARAMETERS`` is 20 M. A larger resolution or batch
gives each operation more work, so there the crossover is expected at a smaller model.

The choice, in order: the ``cpu_threads`` setting; ``OMP_NUM_THREADS`` when set (torch already follows it); on a
GPU, torch's default (the CPU only feeds the GPU); otherwise by the UNet's parameter count.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping

if TYPE_CHECKING:
    import torch
    from accelerate import Accelerator

    from studio.config import TrainConfig

# UNets below this many parameters train on one thread (the toy-world UNet has 1.7 M, SD 1.5's 860 M).
SMALL_MODEL_PARAMETERS = 20_000_000


@dataclass(frozen=True)
class ThreadChoice:
    count: int
    reason: str

    def log_line(self) -> str:
        return f"CPU threads: {self.count} ({self.reason})"


def choose_threads(setting: int | None, denoiser_parameters: int, default_threads: int, processes: int = 1,
                   on_gpu: bool = False, environ: Mapping[str, str] = os.environ) -> ThreadChoice:
    """The thread count for one training process.

    ``default_threads``: torch's own count (one per core, or what ``OMP_NUM_THREADS`` set); ``processes``: the
    training processes sharing this machine's cores.
    """
    if setting:
        return ThreadChoice(setting, "the cpu_threads setting")
    if environ.get("OMP_NUM_THREADS", "").strip():
        return ThreadChoice(default_threads, f"OMP_NUM_THREADS={environ['OMP_NUM_THREADS'].strip()}")
    share = max(1, default_threads // max(1, processes))
    cores = f"{share} per process for {processes} processes" if processes > 1 else "one per core"
    if on_gpu:
        return ThreadChoice(share, f"training on the GPU: torch's default, {cores}")
    size = f"{denoiser_parameters / 1e6:.1f} M denoiser parameters"
    if denoiser_parameters < SMALL_MODEL_PARAMETERS:
        return ThreadChoice(1, f"{size}, under {SMALL_MODEL_PARAMETERS / 1e6:.0f} M: a model this small trains "
                               "faster on one thread; set cpu_threads to choose")
    return ThreadChoice(share, f"{size}: {cores}; set cpu_threads to choose")


def use_threads(config: TrainConfig, denoiser: torch.nn.Module, accelerator: Accelerator,
                note: Callable[[str], None]) -> ThreadChoice:
    """Choose the count for this run, apply it to torch and say it in the run's log (``note``)."""
    import torch

    choice = choose_threads(config.cpu_threads, sum(p.numel() for p in denoiser.parameters()), torch.get_num_threads(),
                            accelerator.num_processes, accelerator.device.type == "cuda")
    torch.set_num_threads(choice.count)
    note(choice.log_line())
    return choice
