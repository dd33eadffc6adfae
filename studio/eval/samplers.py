"""Samplers by their WebUI names (Euler, Euler a, DDIM, DPM++ 2M, …), built from the model's own scheduler config.

Building from the model's config keeps what the model was trained with (prediction type, zero-terminal-SNR
betas, timestep spacing); only the solver changes. A flow-matching model (FLUX.1) is drawn with its own Euler
scheduler: its pipeline hands the scheduler a sigma schedule only the flow-matching schedulers take, and on its
straight noise-to-picture paths DDIM's deterministic step is that Euler step.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Mapping

from .spec import EvalError

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline, SchedulerMixin

# canonical name -> (diffusers class, extra config)
SAMPLERS: dict[str, tuple[str, dict]] = {
    "ddim": ("DDIMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "dpm++_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                                 "use_karras_sigmas": False}),
    "dpm++_2m_karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                                        "use_karras_sigmas": True}),
    "dpm++_2m_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2,
                                                     "use_karras_sigmas": False}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
}
SAMPLER_LABELS = {
    "ddim": "DDIM", "euler": "Euler", "euler_a": "Euler a", "dpm++_2m": "DPM++ 2M",
    "dpm++_2m_karras": "DPM++ 2M Karras", "dpm++_2m_sde": "DPM++ 2M SDE", "unipc": "UniPC", "heun": "Heun",
    "lms": "LMS",
}
_ALIASES = {"eulerancestral": "euler_a", "dpmsolver++": "dpm++_2m", "dpmsolver": "dpm++_2m"}


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9+]", "", name.lower()).replace("dpmpp", "dpm++")


def sampler_name(name: str) -> str:
    """The canonical name for ``"DPM++ 2M Karras"``, ``"dpmpp_2m"``, ``"Euler a"`` …; EvalError when unknown."""
    squashed = _squash(str(name or "ddim"))
    table = {_squash(key): key for key in SAMPLERS} | {_squash(v): k for k, v in SAMPLER_LABELS.items()} | _ALIASES
    if squashed in table:
        return table[squashed]
    choices = ", ".join(SAMPLER_LABELS[key] for key in SAMPLERS)
    raise EvalError(f"sampler {name!r} is unknown: choose one of {choices}.")


FLOW_SAMPLERS = ("ddim", "euler")  # what a flow-matching model can be drawn with here (both: its Euler steps)


def make_scheduler(name: str, model_config: Mapping[str, object]) -> SchedulerMixin:
    """A scheduler of the sampler ``name`` with the model's noise schedule."""
    import diffusers

    canonical = sampler_name(name)
    if str(model_config.get("_class_name", "")).startswith("FlowMatch"):
        if canonical not in FLOW_SAMPLERS:
            raise EvalError(f"sampler {SAMPLER_LABELS[canonical]!r} cannot draw a flow-matching model (FLUX.1): "
                            f"choose {' or '.join(SAMPLER_LABELS[key] for key in FLOW_SAMPLERS)}.")
        return diffusers.FlowMatchEulerDiscreteScheduler.from_config(model_config)
    class_name, extra = SAMPLERS[canonical]
    return getattr(diffusers, class_name).from_config(model_config, **extra)


@contextmanager
def use_sampler(pipe: DiffusionPipeline, name: str) -> Iterator[SchedulerMixin]:
    """Swap ``pipe``'s scheduler for the sampler ``name`` and put the original back afterwards."""
    original = pipe.scheduler
    pipe.scheduler = make_scheduler(name, original.config)
    try:
        yield pipe.scheduler
    finally:
        pipe.scheduler = original
