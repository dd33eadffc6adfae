"""Samplers by their WebUI names (Euler, Euler a, DDIM, DPM++ 2M, …), built from the model's own scheduler config.

Building from the model's config keeps what the model was trained with (prediction type, zero-terminal-SNR
betas, timestep spacing); only the solver changes. A flow-matching model (FLUX.1) is drawn with the flow-matching
Euler sampler, the one ``FluxPipeline`` passes its resolution-dependent shift to; the UNet samplers would treat
its schedule as DDPM betas, so they are refused with a sentence.
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
FLOW_SAMPLERS: dict[str, tuple[str, dict]] = {"euler": ("FlowMatchEulerDiscreteScheduler", {})}
SAMPLER_LABELS = {
    "ddim": "DDIM", "euler": "Euler", "euler_a": "Euler a", "dpm++_2m": "DPM++ 2M",
    "dpm++_2m_karras": "DPM++ 2M Karras", "dpm++_2m_sde": "DPM++ 2M SDE", "unipc": "UniPC", "heun": "Heun",
    "lms": "LMS",
}
_ALIASES = {"eulerancestral": "euler_a", "dpmsolver++": "dpm++_2m", "dpmsolver": "dpm++_2m"}


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9+]", "", name.lower()).replace("dpmpp", "dpm++")


AUTO = "auto"  # DDIM for UNet models, flow-matching Euler for FLUX.1


def sampler_name(name: str) -> str:
    """The canonical name for ``"DPM++ 2M Karras"``, ``"dpmpp_2m"``, ``"Euler a"``, ``"auto"`` …; EvalError when
    unknown."""
    squashed = _squash(str(name or "ddim"))
    if squashed == AUTO:
        return AUTO
    table = {_squash(key): key for key in SAMPLERS} | {_squash(v): k for k, v in SAMPLER_LABELS.items()} | _ALIASES
    if squashed in table:
        return table[squashed]
    choices = ", ".join(SAMPLER_LABELS[key] for key in SAMPLERS)
    raise EvalError(f"sampler {name!r} is unknown: choose one of {choices}.")


def default_sampler(flow_matching: bool) -> str:
    """What ``auto`` means: DDIM for a UNet model, flow-matching Euler for FLUX.1 (each table's first)."""
    return next(iter(FLOW_SAMPLERS if flow_matching else SAMPLERS))


def sampler_choices(flow_matching: bool) -> list[str]:
    """The samplers a model can be drawn with: every one for a UNet model, flow-matching Euler for FLUX.1."""
    return list(FLOW_SAMPLERS if flow_matching else SAMPLERS)


def make_scheduler(name: str, model_config: Mapping[str, object], flow_matching: bool = False) -> SchedulerMixin:
    """A scheduler of the sampler ``name`` with the model's noise schedule (``flow_matching``: a FLUX.1 model's)."""
    import diffusers

    key = sampler_name(name)
    table = FLOW_SAMPLERS if flow_matching else SAMPLERS
    if key == AUTO:
        key = default_sampler(flow_matching)
    if key not in table:
        choices = ", ".join(SAMPLER_LABELS[k] for k in table)
        raise EvalError(f"sampler {SAMPLER_LABELS[key]} draws UNet models; this flow-matching model (FLUX.1) is "
                        f"drawn with {choices}: choose it instead.")
    class_name, extra = table[key]
    return getattr(diffusers, class_name).from_config(model_config, **extra)


def concrete_sampler(name: str, pipe: DiffusionPipeline) -> str:
    """``name``, with ``auto`` replaced by the sampler ``pipe``'s model draws with by default (the grid records it)."""
    from studio.models.families import family_of_pipeline

    key = sampler_name(name)
    if key != AUTO:
        return name
    return default_sampler(family_of_pipeline(pipe).flow_matching)


@contextmanager
def use_sampler(pipe: DiffusionPipeline, name: str) -> Iterator[SchedulerMixin]:
    """Swap ``pipe``'s scheduler for the sampler ``name`` and put the original back afterwards."""
    from studio.models.families import family_of_pipeline

    original = pipe.scheduler
    pipe.scheduler = make_scheduler(name, original.config, family_of_pipeline(pipe).flow_matching)
    try:
        yield pipe.scheduler
    finally:
        pipe.scheduler = original
