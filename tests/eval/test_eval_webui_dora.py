"""A DoRA in the WebUI layout (``dora_scale`` per input column) cannot be drawn by diffusers' loader, which drops the
magnitudes with a warning and draws another model: the studio refuses it with a sentence instead."""
from __future__ import annotations

import pytest
from safetensors.torch import load_file, save_file

from studio.eval import EvalError
from studio.eval.generate import generate_from_prompt


def test_a_webui_dora_is_refused_with_a_sentence_not_drawn_without_its_magnitudes(trained_run, tiny_sd_dir, tmp_path):
    state = load_file(str(trained_run / "tiny.safetensors"))
    down = next(name for name in state if name.endswith(".lora_down.weight") and state[name].dim() == 2)
    module = down[: -len(".lora_down.weight")]
    state[f"{module}.dora_scale"] = state[down].new_ones((1, state[down].shape[1]))
    folder = tmp_path / "loras"
    folder.mkdir()
    save_file(state, str(folder / "dora.safetensors"), metadata={"ss_network_module": "networks.lora"})
    with pytest.raises(EvalError, match="is a DoRA in the ComfyUI/A1111 layout .* dora_axis: diffusers"):
        generate_from_prompt("a red zq circle on a white background <lora:dora:0.8>", base_model=str(tiny_sd_dir),
                             lora_dirs=[folder], steps=1, pipeline_cache={})
