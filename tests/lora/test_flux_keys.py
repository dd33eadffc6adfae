"""The FLUX.1 layout ComfyUI and Forge patch (``studio.lora.flux_keys``) against diffusers' own converter.

ComfyUI's ``flux_to_diffusers`` (re-implemented in ``comfyui_slices``) says which rows of which weight of Black Forest
Labs' layout each diffusers weight is; diffusers' ``convert_flux_transformer_checkpoint_to_diffusers`` (what
``FluxTransformer2DModel.from_single_file`` loads the released files with) says the same from the other side. On the
released FLUX.1-dev sizes (one column per weight, each row numbered) the two must agree row for row, and the weights
``bfl_shapes`` builds must be the ones that converter turns into the diffusers model.
"""
from __future__ import annotations

import bisect

import torch

from studio.lora.flux_keys import RELEASED_CONFIG, bfl_shapes, comfyui_slices, hidden_size, slice_shape


def _released_checkpoint(device: str = "cpu", numbered: bool = True) -> tuple[dict, list[int], list[str]]:
    """A BFL-layout FLUX.1-dev state dict: every weight (rows, 1) holding its global row numbers (or meta tensors of
    the full shapes), biases, and the q/k norm scales; with the first row number of each weight."""
    checkpoint, starts, keys, row = {}, [], [], 0
    for key, shape in bfl_shapes(RELEASED_CONFIG).items():
        rows = shape[0]
        if numbered:
            checkpoint[f"{key}.weight"] = torch.arange(row, row + rows, dtype=torch.float64)[:, None]
        else:
            checkpoint[f"{key}.weight"] = torch.empty(shape, device="meta")
        checkpoint[f"{key}.bias"] = torch.zeros(rows, device=device if numbered else "meta")
        starts.append(row)
        keys.append(key)
        row += rows
    head = int(RELEASED_CONFIG["attention_head_dim"])
    norms = [f"double_blocks.{i}.{s}_attn.norm.{n}_norm.scale" for i in range(RELEASED_CONFIG["num_layers"])
             for s in ("img", "txt") for n in ("query", "key")]
    norms += [f"single_blocks.{i}.norm.{n}_norm.scale" for i in range(RELEASED_CONFIG["num_single_layers"])
              for n in ("query", "key")]
    checkpoint.update({name: torch.ones(head) for name in norms})
    return checkpoint, starts, keys


def test_comfyuis_slices_are_the_rows_diffusers_converter_takes_each_weight_from():
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    checkpoint, starts, keys = _released_checkpoint()
    converted = convert_flux_transformer_checkpoint_to_diffusers(checkpoint)
    slices = comfyui_slices(RELEASED_CONFIG)
    weights = {key[: -len(".weight")]: value for key, value in converted.items()
               if key.endswith(".weight") and value.dim() == 2}
    assert set(weights) == set(slices)
    for path, value in weights.items():
        ids = value[:, 0].long()
        index = bisect.bisect_right(starts, int(ids[0])) - 1  # the weight the first row comes from
        rows = (ids - starts[index]).tolist()
        place = slices[path]
        assert keys[index] == place.key, path
        if place.swapped:
            half = len(rows) // 2
            assert rows == list(range(half, 2 * half)) + list(range(half)), path
        else:
            size = place.size if place.size is not None else len(rows)
            assert rows == list(range(place.start, place.start + size)), path
    assert slices["single_transformer_blocks.0.proj_mlp"].start == 3 * hidden_size(RELEASED_CONFIG)


def test_the_bfl_weights_built_from_the_config_convert_to_the_diffusers_model():
    from accelerate import init_empty_weights
    from diffusers import FluxTransformer2DModel
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    checkpoint, _, _ = _released_checkpoint(numbered=False)
    converted = convert_flux_transformer_checkpoint_to_diffusers(checkpoint)
    with init_empty_weights():
        model = FluxTransformer2DModel(**RELEASED_CONFIG)
    expected = {name: tensor.shape for name, tensor in model.state_dict().items()}
    assert {name: tensor.shape for name, tensor in converted.items()} == expected
    shapes = bfl_shapes(RELEASED_CONFIG)
    for path, place in comfyui_slices(RELEASED_CONFIG).items():
        assert slice_shape(place, shapes) == expected[f"{path}.weight"], path


def test_schnell_has_no_guidance_weights_for_a_guidance_lora_to_patch():
    schnell = {**RELEASED_CONFIG, "guidance_embeds": False}
    shapes = bfl_shapes(schnell)
    place = comfyui_slices(schnell)["time_text_embed.guidance_embedder.linear_1"]
    assert "guidance_in.in_layer" not in shapes
    assert slice_shape(place, shapes) == ("guidance_in.in_layer is not a weight of this FLUX model, so the patch is "
                                          "dropped")
