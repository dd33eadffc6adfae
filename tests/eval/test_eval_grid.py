"""Grids on the tiny model: geometry and labels, weight 0 equals the base, monotonic response, checkpoints, cache."""
from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from studio.eval import GridSpec, render_grid
from studio.eval.session import generate, loaded_adapters
from studio.eval.sheet import GAP, LABEL_WIDTH

PROMPTS = ["a red zq star on a white background", "a blue circle on a gray background"]


def _ink(image: Image.Image, box) -> int:
    """Dark pixels inside ``box``: text was drawn there."""
    pixels = np.asarray(image.convert("L").crop(box))
    return int((pixels < 128).sum())


def test_eval_grid_geometry_labels_cells_and_index(trained_run, tmp_path, pipeline_cache):
    spec = GridSpec(lora=str(trained_run), prompts=PROMPTS, seeds=[0, 1], weights=[0.4, 0.6, 0.8],
                    include_reference=True, steps=3)
    calls = []
    result = render_grid(spec, tmp_path / "grid", progress=lambda d, t: calls.append((d, t)),
                         pipeline_cache=pipeline_cache)
    assert calls[-1] == (16, 16) and not result.stopped
    assert len(result.cells) == 4 * 4
    assert {(c.prompt, c.seed) for c in result.cells} == {(p, s) for p in PROMPTS for s in (0, 1)}
    assert sorted({c.weight for c in result.cells}) == [0.0, 0.4, 0.6, 0.8]
    assert all(c.path.is_file() and Image.open(c.path).size == (32, 32) for c in result.cells)

    sheet = Image.open(result.grid_png)
    index = json.loads(result.index_json.read_text())
    cell_w, cell_h = index["cell_size"]
    assert (cell_w, cell_h) == (128, 128)  # 32 px pictures enlarged x4
    assert sheet.width == LABEL_WIDTH + 4 * (cell_w + GAP) + GAP
    top = sheet.height - 4 * (cell_h + GAP) - GAP
    assert top > 40  # room for the title, the axis title and the column headers
    assert index["columns"] == ["weight 0 (base)", "weight 0.4", "weight 0.6", "weight 0.8"]
    assert [row["label"][:2] for row in index["rows"]] == [[p, f"seed {s}"] for p in PROMPTS for s in (0, 1)]
    assert all((tmp_path / "grid" / cell["path"]).is_file() for cell in index["cells"])
    assert {"change_from_base"} <= set(index["cells"][0]["metrics"])
    assert _ink(sheet, (GAP, 0, sheet.width, 28)) > 50, "no title"
    for c in range(4):  # a header over every column, a label beside every row
        left = LABEL_WIDTH + GAP + c * (cell_w + GAP)
        assert _ink(sheet, (left, top - 20, left + cell_w, top)) > 10, f"no header over column {c}"
    for r in range(4):
        y = top + r * (cell_h + GAP)
        assert _ink(sheet, (GAP, y, LABEL_WIDTH, y + cell_h)) > 50, f"no label beside row {r}"
    corner = sheet.getpixel((LABEL_WIDTH + GAP + cell_w // 2, top + cell_h // 2))
    assert corner == Image.open(result.cells[0].path).convert("RGB").getpixel((16, 16))


def test_eval_weight_zero_cells_equal_the_base_model_output(trained_run, tiny_sd_dir, tmp_path, pipeline_cache):
    from studio.models import load_pipeline

    spec = GridSpec(lora=str(trained_run), prompts=PROMPTS, seeds=[0, 3], weights=[0.5],
                    include_reference=True, steps=3)
    result = render_grid(spec, tmp_path / "grid", pipeline_cache=pipeline_cache)
    base = load_pipeline(str(tiny_sd_dir))
    base.set_progress_bar_config(disable=True)
    rows = [(p, s) for p in PROMPTS for s in (0, 3)]
    expected = generate(base, [p for p, _ in rows], [""] * 4, [s for _, s in rows], steps=3, guidance=5.0,
                        width=32, height=32)
    for (prompt, seed), image in zip(rows, expected):
        cell = next(c for c in result.cells if (c.prompt, c.seed, c.weight) == (prompt, seed, 0.0))
        assert np.array_equal(np.asarray(Image.open(cell.path)), np.asarray(image)), (prompt, seed)
        lora_cell = next(c for c in result.cells if (c.prompt, c.seed, c.weight) == (prompt, seed, 0.5))
        assert not np.array_equal(np.asarray(Image.open(lora_cell.path)), np.asarray(image))


def test_eval_cells_move_monotonically_away_from_weight_zero(trained_run, tmp_path, pipeline_cache):
    weights = [0.2, 0.4, 0.6, 0.8, 1.0]
    spec = GridSpec(lora=str(trained_run), prompts=PROMPTS[:1], seeds=[0], weights=weights, steps=4)
    result = render_grid(spec, tmp_path / "grid", pipeline_cache=pipeline_cache)
    change = [next(c for c in result.cells if c.weight == w).metrics["change_from_base"] for w in weights]
    assert change[0] > 0
    assert all(b > a for a, b in zip(change, change[1:])), change
    assert result.metrics["monotonic_share"] == 1.0
    assert list(result.metrics["change_by_weight"]) == weights


def test_eval_checkpoint_rows_and_trigger_rows(trained_run, tmp_path, pipeline_cache):
    spec = GridSpec(lora=str(trained_run), prompts=PROMPTS[:1], seeds=[0], weights=[0.5, 1.0], steps=2,
                    checkpoints=["all"], trigger="zq")
    result = render_grid(spec, tmp_path / "grid", pipeline_cache=pipeline_cache)
    index = json.loads(result.index_json.read_text())
    rows = [(r["checkpoint"], r["prompt"], r["trigger"]) for r in index["rows"]]
    variants = [("a red zq star on a white background", True), ("a red star on a white background", False)]
    assert rows == [(c, p, t) for c in ("step 10", "step 20", "final") for p, t in variants]
    assert set(result.metrics["by_checkpoint"]) == {"step 10", "step 20", "final"}
    assert set(result.metrics["trigger"]) == {"with", "without"}
    assert len(result.cells) == 6 * 2
    late, early = (result.metrics["by_checkpoint"][k]["change_by_weight"][1.0] for k in ("final", "step 10"))
    assert late > early > 0


def test_eval_pipeline_loads_once_and_is_left_clean(trained_run, tmp_path, monkeypatch):
    import studio.models

    loads = []
    real = studio.models.load_pipeline
    monkeypatch.setattr(studio.models, "load_pipeline", lambda *a, **k: loads.append(a) or real(*a, **k))
    cache: dict = {}
    for sampler in ("euler", "dpm++ 2m"):
        spec = GridSpec(lora=str(trained_run), prompts=PROMPTS[:1], weights=[0.5], steps=2, sampler=sampler)
        render_grid(spec, tmp_path / sampler, pipeline_cache=cache)
    assert len(loads) == 1
    (pipe,) = cache.values()
    assert loaded_adapters(pipe) == set()
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"


def test_eval_merged_weights_leave_the_cached_model_bit_for_bit_the_base(trained_run, tmp_path, pipeline_cache):
    """Each weight is drawn with the LoRA merged in; afterwards every base weight is exactly what it was."""
    render_grid(GridSpec(lora=str(trained_run), prompts=PROMPTS[:1], weights=[0.5], steps=1), tmp_path / "warm",
                pipeline_cache=pipeline_cache)
    (pipe,) = pipeline_cache.values()
    before = {f"{part}.{name}": tensor.clone() for part in ("unet", "text_encoder")
              for name, tensor in getattr(pipe, part).state_dict().items()}
    spec = GridSpec(lora=str(trained_run), prompts=PROMPTS[:1], seeds=[0], weights=[0.4, 0.9, 1.5], steps=2,
                    checkpoints=["all"])
    render_grid(spec, tmp_path / "grid", pipeline_cache=pipeline_cache)
    after = {f"{part}.{name}": tensor for part in ("unet", "text_encoder")
             for name, tensor in getattr(pipe, part).state_dict().items()}
    assert after.keys() == before.keys()
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert changed == []


def test_eval_checkpoint_rows_share_one_weight_zero_picture(trained_run, tmp_path, pipeline_cache, monkeypatch):
    """The weight-0 picture is the base model's whatever the checkpoint, so it is drawn once per prompt and seed."""
    import studio.eval.grid as grid_module

    drawn = []
    real = grid_module.generate
    monkeypatch.setattr(grid_module, "generate", lambda pipe, prompts, *a, **k: drawn.append(len(prompts))
                        or real(pipe, prompts, *a, **k))
    spec = GridSpec(lora=str(trained_run), prompts=PROMPTS[:1], seeds=[0, 1], weights=[0.0, 0.8], steps=2,
                    checkpoints=["all"])
    calls = []
    result = render_grid(spec, tmp_path / "grid", progress=lambda d, t: calls.append((d, t)),
                         pipeline_cache=pipeline_cache)
    assert calls[-1] == (12, 12)  # 3 checkpoints x 2 seeds x 2 weights
    assert sum(drawn) == 2 + 3 * 2  # the two weight-0 pictures once, then 0.8 for every checkpoint
    zero = {}
    for cell in result.cells:
        if cell.weight == 0.0:
            pixels = np.asarray(Image.open(cell.path))
            assert np.array_equal(zero.setdefault(cell.seed, pixels), pixels), cell.checkpoint
    assert sorted(zero) == [0, 1]


def test_eval_stop_writes_the_cells_drawn_so_far(trained_run, tmp_path, pipeline_cache):
    spec = GridSpec(lora=str(trained_run), prompts=PROMPTS, seeds=[0], weights=[0.4, 0.8], steps=2, batch_size=1)
    asked = []
    result = render_grid(spec, tmp_path / "grid", should_stop=lambda: asked.append(1) or len(asked) > 3,
                         pipeline_cache=pipeline_cache)
    assert result.stopped
    assert 0 < len(result.cells) < 4
    # the hidden weight-0 pictures come first, so every cell drawn before the stop is measured against them
    assert all(cell.metrics["change_from_base"] is not None for cell in result.cells)
    index = json.loads(result.index_json.read_text())
    assert index["stopped"] is True and len(index["cells"]) == len(result.cells)
    assert result.grid_png.is_file()


def test_eval_cells_drawn_several_weights_per_batch_match_one_weight_at_a_time(trained_run, tiny_sd_dir, tmp_path,
                                                                               pipeline_cache):
    """A row's weights share a batch (a weight per picture); each cell is still what that weight alone draws."""
    from studio.eval.generate import generate_from_prompt

    spec = GridSpec(lora=str(trained_run), prompts=PROMPTS[:1], seeds=[0, 1], weights=[0.3, 0.9], steps=3)
    result = render_grid(spec, tmp_path / "grid", pipeline_cache=pipeline_cache)
    for cell in result.cells:
        prompt = f"{PROMPTS[0]} <lora:pytorch_lora_weights:{cell.weight}>"
        (alone,) = generate_from_prompt(prompt, base_model=str(tiny_sd_dir), lora_dirs=[trained_run], steps=3,
                                        seeds=[cell.seed], pipeline_cache=pipeline_cache)
        drawn = np.asarray(Image.open(cell.path), dtype=np.int16)
        assert np.abs(drawn - np.asarray(alone, dtype=np.int16)).max() <= 2, (cell.seed, cell.weight)


def test_eval_per_picture_weights_only_for_plain_loras(tiny_sd_dir):
    """A DoRA's magnitude normalises base plus LoRA together, so it is drawn one weight at a time instead."""
    from peft import LoraConfig

    from studio.eval.weighting import per_picture_weights, supports_per_picture_weights
    from studio.models import load_pipeline

    pipe = load_pipeline(str(tiny_sd_dir))
    targets = ["to_q", "to_k", "to_v", "to_out.0"]
    pipe.unet.add_adapter(LoraConfig(r=2, target_modules=targets, init_lora_weights=False), adapter_name="plain")
    pipe.unet.add_adapter(LoraConfig(r=2, target_modules=targets, use_dora=True), adapter_name="dora")
    assert supports_per_picture_weights(pipe, "plain")
    assert not supports_per_picture_weights(pipe, "dora")
    assert not supports_per_picture_weights(pipe, "missing")
    pipe.set_adapters(["plain"], [1.0])
    sample, hidden = torch.randn(3, 4, 16, 16), torch.randn(3, 77, pipe.text_encoder.config.hidden_size)
    with torch.no_grad(), per_picture_weights(pipe, "plain", [0.0, 0.5, 1.0]):
        mixed = pipe.unet(sample, 10, hidden).sample
    for index, weight in enumerate([0.0, 0.5, 1.0]):
        pipe.set_adapters(["plain"], [weight])
        with torch.no_grad():
            alone = pipe.unet(sample[index:index + 1], 10, hidden[index:index + 1]).sample
        assert torch.allclose(mixed[index:index + 1], alone, atol=1e-5), weight
