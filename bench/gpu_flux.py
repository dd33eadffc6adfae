"""FLUX.1-shaped LoRA training on a GPU: ours vs a loop written like diffusers' ``train_dreambooth_lora_flux.py``
(``bench_gpu.py --model flux`` runs it; this module plans, runs and reports).

The transformer is FLUX.1-dev's at its real width (11.9 B parameters, random weights; ``flux_shapes.py``), with
FLUX's 16-channel VAE and text-encoder stand-ins of the right output shapes (CLIP pooled 768, T5 4096 × 512
tokens). Batch 1 at 512 and 1024 px; ours with its frozen base stored bf16, fp8 and nf4 (``base_weights``), the
reference with the script's bf16 base (``--mixed_precision bf16``); both train a rank-16 LoRA on
``to_q/to_k/to_v/to_out.0`` in bf16 mixed precision; gradient checkpointing on, then off, on the same model.
Each side runs alone in its own process (``flux_gpu_side.py``): one 12 B model fits an 80 GB GPU beside its
activations, two would not. Reported per row: s/step (median of the timed steps, each up to
``torch.cuda.synchronize()``), the speed-up (reference s/step / ours, bf16 reference), the peak GPU memory the
allocator handed out during the steps and during set-up (``torch.cuda.max_memory_allocated``). Ours caches the
latents and the text conditioning and moves the text encoders off the GPU; the reference encodes both at every
step as the script does with per-picture captions, but with the stand-ins, not CLIP-L and T5-XXL: the script
with real encoders would also hold T5-XXL (about 9 GB in bf16) on the GPU and run it each step, so its real
figures are higher than these. ``--quick``: 1024 px only, fewer steps. Estimated, not yet measured: the full run
(8 processes, nf4's two each writing and reading back a 22 GiB scratch copy) needs about 7-9 minutes on one
H100, ``--quick`` about 4; with ``--json FILE`` a run cut short still leaves the sides it finished
(``bench_gpu.py --render FILE`` writes their section).
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SECTION = "## GPU (FLUX.1)"
BASE_WEIGHTS = ("bf16", "fp8", "nf4")
RESOLUTIONS = {"full": (512, 1024), "quick": (1024,), "tiny": (64, 128)}
STEPS = {"full": (1, 4), "quick": (1, 3), "tiny": (1, 2)}  # (warm-up, timed) per gradient-checkpointing setting
CHECKPOINTING = (True, False)  # on first: an out-of-memory "off" cannot disturb the "on" numbers
SIDE_TIMEOUT_S = 420


def mode(quick: bool, tiny: bool) -> str:
    return "tiny" if tiny else ("quick" if quick else "full")


def plan(quick: bool, tiny: bool, base_weights: tuple[str, ...] = BASE_WEIGHTS) -> list[tuple[str, str, int]]:
    """The side processes, in order: (side, base weights, resolution); the reference first at each resolution."""
    return [process for resolution in RESOLUTIONS[mode(quick, tiny)]
            for process in [("reference", "bf16", resolution), *(("ours", w, resolution) for w in base_weights)]]


def listing(quick: bool, tiny: bool, base_weights: tuple[str, ...] = BASE_WEIGHTS) -> str:
    """What a run would measure, one line per side process and checkpointing setting (nothing imported)."""
    warmup, timed = STEPS[mode(quick, tiny)]
    return "\n".join(f"flux {resolution} px batch 1 bf16 checkpointing {'on' if on else 'off'} base_weights "
                     f"{weights}: {side}, {warmup} warm-up + {timed} timed steps"
                     for side, weights, resolution in plan(quick, tiny, base_weights) for on in CHECKPOINTING)


def run_side(side: str, weights: str, resolution: int, data: Path, work: Path, steps: tuple[int, int],
             tiny: bool) -> dict:
    """One side process; its set-up line and one line per checkpointing setting, or the error it ended with."""
    from train_sides import PREFIX

    command = [sys.executable, str(REPO / "bench" / "flux_gpu_side.py"), "--side", side, "--base-weights", weights,
               "--resolution", str(resolution), "--data", str(data), "--work", str(work / f"{side}-{weights}-{resolution}"),
               "--checkpointing", *(str(int(on)) for on in CHECKPOINTING), "--steps", *map(str, steps)]
    command += ["--tiny"] if tiny else []
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=SIDE_TIMEOUT_S,
                              env=_env())
        output, error, code = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired as expired:
        output, error, code = _text(expired.stdout), _text(expired.stderr), f"timed out after {SIDE_TIMEOUT_S} s"
    lines = [json.loads(line[len(PREFIX):]) for line in output.splitlines() if line.startswith(PREFIX)]
    result = {"side": side, "base_weights": weights, "resolution": resolution, "wall_s": time.perf_counter() - started,
              "setup": next((line for line in lines if line.get("setup")), None),
              "variants": [line for line in lines if not line.get("setup")]}
    if code != 0:
        result["error"] = f"exit status {code}: {error.strip()[-1500:]}"
    return result


def _env() -> dict:
    import os

    return {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")


def run(quick: bool, tiny: bool, base_weights: tuple[str, ...] = BASE_WEIGHTS, say=print,
        save: Path | None = None) -> dict:
    """Every side process of the plan, one after the other; each one's result is said as it ends, and the result
    so far is written to ``save`` (when given) after each, so a run cut short still leaves what it measured."""
    from common import machine
    from train_models import generated_pictures

    command = "python bench/bench_gpu.py --model flux" + (" --quick" if quick else "")
    command += " --tiny --allow-cpu" if tiny else ""
    command += "" if tuple(base_weights) == BASE_WEIGHTS else f" --base-weights {' '.join(base_weights)}"
    result = {"sides": [], "machine": machine(), "steps": STEPS[mode(quick, tiny)], "tiny": tiny,
              "command": command, "wall_s": 0.0}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-gpu-flux-") as scratch:
        work = Path(scratch)
        for side, weights, resolution in plan(quick, tiny, base_weights):
            data = work / f"pictures-{resolution}"
            if not data.is_dir():
                generated_pictures(data, 4, size=max(512, resolution))
            result["sides"].append(run_side(side, weights, resolution, data, work, result["steps"], tiny))
            result["wall_s"] = time.perf_counter() - started
            say(json.dumps(result["sides"][-1]))
            if save is not None:
                save.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


def rows(result: dict) -> list[dict]:
    """One row per (resolution, checkpointing, ours' base weights), the bf16 reference's numbers beside."""
    def variant(side: dict, on: bool) -> dict:
        return next((v for v in side["variants"] if v["checkpointing"] == on), {})

    found = []
    references = {s["resolution"]: s for s in result["sides"] if s["side"] == "reference"}
    for ours in (s for s in result["sides"] if s["side"] == "ours"):
        reference = references.get(ours["resolution"], {"variants": [], "setup": None})
        for on in CHECKPOINTING:
            mine, theirs = variant(ours, on), variant(reference, on)
            ratio = theirs["s_per_step"] / mine["s_per_step"] if "s_per_step" in mine and "s_per_step" in theirs \
                else None
            found.append({"resolution": ours["resolution"], "checkpointing": on, "base_weights": ours["base_weights"],
                          "ours": mine, "reference": theirs, "ratio": ratio, "ours_setup": ours["setup"] or {},
                          "reference_setup": reference["setup"] or {}, "ours_error": ours.get("error"),
                          "reference_error": reference.get("error")})
    return found


def _seconds(variant: dict, error: str | None) -> str:
    if "s_per_step" in variant:
        return f"{variant['s_per_step']:.3f}"
    if "out_of_memory" in variant:
        return "out of memory"
    return "failed" if error else "—"


def _mib(value) -> str:
    return "—" if value is None else f"{value:,.0f}"


def markdown(result: dict) -> str:
    """The ``## GPU (FLUX.1)`` section of BENCHMARKS.md."""
    from common import describe_machine, markdown_table, unwrap

    header = ["px", "gradient checkpointing", "base weights (ours)", "ours s/step", "reference s/step (bf16)",
              "speed-up", "ours peak VRAM MiB", "reference peak VRAM MiB", "ours set-up peak MiB",
              "reference set-up peak MiB"]
    table = [[r["resolution"], "on" if r["checkpointing"] else "off", r["base_weights"],
              _seconds(r["ours"], r["ours_error"]), _seconds(r["reference"], r["reference_error"]),
              "—" if r["ratio"] is None else f"**{r['ratio']:.2f}×**", _mib(r["ours"].get("peak_vram_mb")),
              _mib(r["reference"].get("peak_vram_mb")), _mib(r["ours_setup"].get("setup_peak_vram_mb")),
              _mib(r["reference_setup"].get("setup_peak_vram_mb"))] for r in rows(result)]
    errors = [f"- {s['side']} {s['base_weights']} {s['resolution']} px: {s['error'].splitlines()[-1]}"
              for s in result["sides"] if s.get("error")]
    warmup, timed = result["steps"]
    intro = unwrap(__doc__.split("\n\n", 1)[1].split("``--quick``")[0].strip())
    return "\n".join([
        SECTION, "", intro, "", f"{warmup} warm-up + {timed} timed steps per setting.", "",
        markdown_table(header, table, "rll" + "r" * 7), "", *(["Failures:", *errors, ""] if errors else []),
        f"{describe_machine(result['machine'])} Whole run: {result['wall_s']:.0f} s.", "",
        f"Command: `{result['command']}`", ""])
