"""What the Evaluation tab calls: a run's weight grid, its metrics and the verdict written to ``evaluation.md``.

No gradio here. The studio owns one :class:`Evaluation` (``studio.evaluation``); it keeps the loaded pipelines
between grids, so the second grid of a base model does not load it again.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from studio.app.confine import confine_file_inside, confine_model_source
from studio.app.errors import StudioError
from studio.eval.metrics import METRIC_HELP
from studio.eval.resolve import checkpoint_label
from studio.eval.verdict import rows_read
from studio.lora import DIFFUSERS_WEIGHT_NAME

# what the Evaluation tab uses from the evaluation engine besides this owner
__all__ = ["DIFFUSERS_WEIGHT_NAME", "METRIC_HELP", "UNET_GUIDANCE", "Evaluation", "checkpoint_label", "rows_read"]
UNET_GUIDANCE = 5.0  # the grid's guidance for SD 1.x and SDXL models


class Evaluation:
    """Weight grids of the studio's runs; ``pipeline_cache`` holds the pipelines loaded so far."""

    def __init__(self, studio):
        self.studio = studio
        self.pipeline_cache: dict = {}

    def render_grid(self, run_label: str, checkpoint: str, prompts: list[str], seeds: list[int],
                    weights: list[float], steps: int = 25, guidance: float = UNET_GUIDANCE, sampler: str = "auto",
                    trigger: str = "", all_checkpoints: bool = False, progress=None):
        """Render the weight grid of a run (or of all its checkpoints); returns (GridResult, evaluation.md text).

        The verdict (recommended weights, best checkpoint, loss-curve diagnosis) is written to the run's
        ``evaluation.md``; the pipeline stays cached for the next grid.
        """
        from studio.eval import GridSpec, render_grid, write_evaluation
        from studio.eval.loss import diagnose_run

        run = self.studio.runs.find(run_label)
        if all_checkpoints:
            lora, checkpoints = run.path, ["all"]
        elif checkpoint in ("", "final", None):
            lora, checkpoints = run.final_lora, []
        else:
            lora, checkpoints = confine_file_inside(checkpoint, run.path, "the checkpoint"), []
        if lora is None:
            raise StudioError(f"run {run.name} has no final LoRA yet; pick one of its checkpoints")
        prompts = [p.strip() for p in prompts if p.strip()]
        if not prompts:
            raise StudioError("write at least one prompt (one per line)")
        self._check_prompt_loras(prompts, run.path)
        base_model = confine_model_source(run.base_model, self.studio.access, "the run's base model")
        spec = GridSpec(lora=str(lora), base_model=base_model, prompts=prompts, seeds=seeds, weights=weights,
                        steps=steps, guidance=guidance, sampler=sampler, trigger=trigger, checkpoints=checkpoints,
                        lora_dirs=[str(self.studio.output_dir)])
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        result = render_grid(spec, run.path / "eval" / f"grid-{stamp}", progress=progress,
                             pipeline_cache=self.pipeline_cache)
        report = write_evaluation(run.path, result, diagnose_run(run.path))
        return result, report.read_text(encoding="utf-8")

    def drawing_defaults(self, run_label: str) -> tuple[list[str], str, float]:
        """(the samplers the run's base model can be drawn with, the one to start from, the guidance to start from):
        a flow-matching model (FLUX.1) has the flow-matching Euler sampler and its family's guidance; UNet models
        keep every sampler, DDIM and guidance 5. Read from the model's files, nothing loaded."""
        from studio.eval.samplers import default_sampler, sampler_choices
        from studio.models import describe_model

        run = self.studio.runs.find(run_label)
        try:
            source = confine_model_source(run.base_model, self.studio.access, "the run's base model")
            family = describe_model(source).family
        except ValueError:  # moved, unreadable or not this user's to read: the grid itself will say so
            family = None
        if family is not None and family.flow_matching:
            distilled = _guidance_embedded(Path(source) / "transformer" / "config.json")
            return sampler_choices(True), default_sampler(True), float(family.default_guidance) if distilled else 1.0
        return sampler_choices(False), default_sampler(False), UNET_GUIDANCE

    def _check_prompt_loras(self, prompts: list[str], run_dir: Path) -> None:
        """Every ``<lora:name:w>`` of the prompts names a LoRA this user may read (names are looked up as the grid
        looks them up: in the workspace's runs and beside this run)."""
        from studio.eval import EvalError
        from studio.eval.prompts import parse_prompt
        from studio.eval.resolve import default_search_dirs, resolve_lora

        search_dirs = default_search_dirs(run_dir, [str(self.studio.output_dir)])
        for prompt in prompts:
            for tag in parse_prompt(prompt).loras:
                try:
                    found = resolve_lora(tag.name, search_dirs)
                except EvalError:
                    continue  # the grid reports the missing LoRA with its own message
                self.studio.access.resolve(Path(found).resolve(), what=f"<lora:{tag.name}>")


def _guidance_embedded(transformer_config: Path) -> bool:
    """False for a FLUX transformer folder without a guidance embedding (schnell: drawn without classifier-free
    guidance); True for dev, and wherever the config cannot be read here (a single file, a hub id)."""
    import json

    try:
        return bool(json.loads(transformer_config.read_text(encoding="utf-8")).get("guidance_embeds", True))
    except (OSError, ValueError):
        return True
