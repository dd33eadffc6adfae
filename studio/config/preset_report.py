"""What a combination of presets did: which preset set each setting, what a later one overrode, and where the
result breaks a chosen preset's own advice (``advice:`` in its file), such as a demo's learning rate left without
the steps it was tuned for.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .presets import STEPS, Advice, Preset, preset_values
from .schema import TrainConfig, config_fields


@dataclass(frozen=True)
class SettingOrigin:
    """One setting the presets touched: its value before them, each preset's value in the order applied, and the
    value in the resulting config (a demo's relative paths come back resolved)."""

    setting: str
    before: Any
    chain: tuple[tuple[str, Any], ...]  # (preset name, the value it set)
    now: Any

    @property
    def set_by(self) -> str:
        return self.chain[-1][0]

    @property
    def overridden(self) -> tuple[tuple[str, Any], ...]:
        """Earlier presets' values that the last one replaced (a preset repeating the same value is not listed)."""
        last = self.chain[-1][1]
        return tuple((name, value) for name, value in self.chain[:-1] if value != last)


@dataclass
class PresetReport:
    presets: list[Preset]
    origins: list[SettingOrigin]
    warnings: list[str] = field(default_factory=list)
    steps: int | None = None  # the combined config's run length in optimizer steps, when it could be worked out


def steps_per_epoch(config: TrainConfig, image_count: int) -> int:
    """Optimizer steps of one epoch over ``image_count`` pictures (repeats and prior pictures included).

    Pictures of different aspect ratios fill separate batches, so a bucketed dataset may take a few more.
    """
    priors = config.prior_ratio if (config.prior_count or config.prior_data_dir) else 0.0
    pictures = image_count * config.repeats * (1 + priors)
    return max(1, math.ceil(math.ceil(pictures / config.batch_size) / config.gradient_accumulation_steps))


def run_length(config: TrainConfig, image_count: int | None) -> tuple[int | None, str]:
    """(optimizer steps, how they come about) — ``None`` steps when epochs decide and the pictures are unknown."""
    if config.max_steps:
        return config.max_steps, f"max_steps {config.max_steps}"
    if not image_count:
        return None, f"{config.epochs} epochs over the dataset"
    per_epoch = steps_per_epoch(config, image_count)
    return config.epochs * per_epoch, (f"{config.epochs} epochs × {per_epoch} steps of batch {config.batch_size} "
                                       f"over {image_count} pictures")


def explain_presets(before: TrainConfig, chosen: list[Preset], after: TrainConfig,
                    image_count: int | None = None) -> PresetReport:
    """The report of applying ``chosen`` (in order) to ``before``, which gave ``after``."""
    chains: dict[str, list[tuple[str, Any]]] = {}
    for preset in chosen:
        for setting, value in preset_values(preset).items():
            chains.setdefault(setting, []).append((preset.name, value))
    origins = [SettingOrigin(name, getattr(before, name), tuple(chains[name]), getattr(after, name))
               for name in (f.name for f in config_fields()) if name in chains]
    steps, how = run_length(after, image_count)
    warnings = [text for preset in chosen for advice in preset.advice
                if (text := _broken_advice(preset, advice, after, origins, steps, how))]
    return PresetReport(list(chosen), origins, warnings, steps)


def _broken_advice(preset: Preset, advice: Advice, config: TrainConfig, origins: list[SettingOrigin],
                   steps: int | None, how: str) -> str:
    """The warning when ``config`` breaks ``advice`` of ``preset``, else ""."""
    if advice.setting == STEPS:
        if steps is None or advice.allows(steps):
            return ""
        replaced = [o for o in origins if o.setting in ("max_steps", "epochs") and o.set_by != preset.name]
        by = " and ".join(sorted({o.set_by for o in replaced}))
        fix = f"set max_steps to {advice.low:g} or more" if advice.low is not None else "set a shorter max_steps"
        if by:
            return (f"{preset.name} advises {advice.limit_text()} training steps ({advice.why}), but {by} replaced "
                    f"its training length: this combination trains about {steps} ({how}). Apply {preset.name} "
                    f"without {by}, or {fix}.")
        return (f"{preset.name} advises {advice.limit_text()} training steps ({advice.why}), but this config trains "
                f"about {steps} ({how}); {fix}.")
    value = getattr(config, advice.setting)
    if value is None or advice.allows(value):
        return ""
    origin = next((o for o in origins if o.setting == advice.setting), None)
    source = f", set by {origin.set_by}" if origin else " (from your config)"
    return (f"{preset.name} advises {advice.setting} {advice.limit_text()} ({advice.why}), but it is {value:g}"
            f"{source}.")
