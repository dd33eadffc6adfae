"""Diffusers -> original ("LDM", CompVis) key layout of a Stable Diffusion 1.x checkpoint (and the UNet / VAE of
an SDXL one, which use the same scheme; ``ldm_keys_sdxl`` adds SDXL's text encoders).

The inverse of diffusers' ``convert_ldm_unet_checkpoint`` / ``convert_ldm_vae_checkpoint`` /
``convert_ldm_clip_checkpoint``, which the pip package only ships in the LDM -> diffusers direction. Every
diffusers key is mapped through a table of module prefixes built from the component's config; a key that no
prefix covers raises instead of being dropped, so an export either holds every weight or fails loudly.
"""
from __future__ import annotations

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_ENCODER_PREFIX = "cond_stage_model.transformer.text_model."

# diffusers ResnetBlock2D (UNet) child -> LDM ResBlock child
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
# diffusers ResnetBlock2D (VAE) child -> LDM ResnetBlock child
_VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
# diffusers Attention (VAE mid block) child -> LDM AttnBlock child
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}

# (diffusers prefix, LDM prefix, child renames)
PrefixTable = list[tuple[str, str, dict[str, str]]]


def _layers_per_block(config: dict) -> int:
    layers = config["layers_per_block"]
    if not isinstance(layers, int):
        raise ValueError("per-block layer counts have no LDM layout: export a UNet with a single layers_per_block.")
    return layers


def unet_prefix_table(config: dict) -> PrefixTable:
    """Module prefixes of an SD 1.x / SDXL UNet: input_blocks / middle_block / output_blocks as LDM numbers them.

    A transformer keeps its inner ``transformer_blocks.N`` names in both layouts, so a per-block transformer
    depth (SDXL's 1 / 2 / 10) needs no entry of its own; SDXL's added text-time embedding is LDM's ``label_emb``.
    """
    layers = _layers_per_block(config)
    blocks = len(config["block_out_channels"])
    table: PrefixTable = [
        ("time_embedding.linear_1.", "time_embed.0.", {}),
        ("time_embedding.linear_2.", "time_embed.2.", {}),
        ("conv_in.", "input_blocks.0.0.", {}),
        ("conv_norm_out.", "out.0.", {}),
        ("conv_out.", "out.2.", {}),
        ("mid_block.resnets.0.", "middle_block.0.", _UNET_RESNET),
        ("mid_block.attentions.0.", "middle_block.1.", {}),
        ("mid_block.resnets.1.", "middle_block.2.", _UNET_RESNET),
        ("add_embedding.linear_1.", "label_emb.0.0.", {}),
        ("add_embedding.linear_2.", "label_emb.0.2.", {}),
    ]
    for block in range(blocks):
        for layer in range(layers):
            index = 1 + block * (layers + 1) + layer
            table.append((f"down_blocks.{block}.resnets.{layer}.", f"input_blocks.{index}.0.", _UNET_RESNET))
            table.append((f"down_blocks.{block}.attentions.{layer}.", f"input_blocks.{index}.1.", {}))
        if block < blocks - 1:
            index = 1 + block * (layers + 1) + layers
            table.append((f"down_blocks.{block}.downsamplers.0.conv.", f"input_blocks.{index}.0.op.", {}))
    for block in range(blocks):
        for layer in range(layers + 1):
            index = block * (layers + 1) + layer
            table.append((f"up_blocks.{block}.resnets.{layer}.", f"output_blocks.{index}.0.", _UNET_RESNET))
            table.append((f"up_blocks.{block}.attentions.{layer}.", f"output_blocks.{index}.1.", {}))
        if block < blocks - 1:
            index = block * (layers + 1) + layers
            # LDM puts the upsampler after the attention when the block has one.
            slot = 2 if "CrossAttn" in config["up_block_types"][block] else 1
            table.append((f"up_blocks.{block}.upsamplers.0.conv.", f"output_blocks.{index}.{slot}.conv.", {}))
    return table


def vae_prefix_table(config: dict) -> PrefixTable:
    """Module prefixes of an SD 1.x VAE; LDM numbers the decoder's up blocks in reverse."""
    blocks = len(config["block_out_channels"])
    layers = _layers_per_block(config)
    table: PrefixTable = [("quant_conv.", "quant_conv.", {}), ("post_quant_conv.", "post_quant_conv.", {})]
    for part in ("encoder", "decoder"):
        table += [
            (f"{part}.conv_in.", f"{part}.conv_in.", {}),
            (f"{part}.conv_out.", f"{part}.conv_out.", {}),
            (f"{part}.conv_norm_out.", f"{part}.norm_out.", {}),
            (f"{part}.mid_block.resnets.0.", f"{part}.mid.block_1.", _VAE_RESNET),
            (f"{part}.mid_block.resnets.1.", f"{part}.mid.block_2.", _VAE_RESNET),
            (f"{part}.mid_block.attentions.0.", f"{part}.mid.attn_1.", _VAE_ATTENTION),
        ]
    for block in range(blocks):
        for layer in range(layers):
            table.append((f"encoder.down_blocks.{block}.resnets.{layer}.", f"encoder.down.{block}.block.{layer}.", _VAE_RESNET))
        table.append((f"encoder.down_blocks.{block}.downsamplers.0.conv.", f"encoder.down.{block}.downsample.conv.", {}))
        ldm_block = blocks - 1 - block
        for layer in range(layers + 1):
            table.append((f"decoder.up_blocks.{block}.resnets.{layer}.", f"decoder.up.{ldm_block}.block.{layer}.", _VAE_RESNET))
        table.append((f"decoder.up_blocks.{block}.upsamplers.0.conv.", f"decoder.up.{ldm_block}.upsample.conv.", {}))
    return table


def _map_key(key: str, table: PrefixTable, component: str) -> str:
    for diffusers_prefix, ldm_prefix, renames in table:
        if key.startswith(diffusers_prefix):
            rest = key[len(diffusers_prefix) :]
            for old, new in renames.items():
                if rest.startswith(old + "."):
                    rest = new + rest[len(old) :]
                    break
            return ldm_prefix + rest
    raise ValueError(
        f"the {component} weight {key!r} has no place in a single-file checkpoint: "
        "export only SD 1.x or SDXL pipelines."
    )


def unet_to_ldm(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    table = unet_prefix_table(config)
    return {UNET_PREFIX + _map_key(key, table, "UNet"): value for key, value in state.items()}


def vae_to_ldm(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """VAE keys; the mid-block attention's linear weights become the 1x1 convolutions LDM uses."""
    table = vae_prefix_table(config)
    out = {}
    for key, value in state.items():
        ldm_key = _map_key(key, table, "VAE")
        if ".mid.attn_1." in ldm_key and ldm_key.endswith(".weight") and value.ndim == 2:
            value = value[:, :, None, None]
        out[VAE_PREFIX + ldm_key] = value
    return out


def text_encoder_to_ldm(state: dict[str, torch.Tensor], prefix: str = TEXT_ENCODER_PREFIX) -> dict[str, torch.Tensor]:
    """CLIPTextModel keys (with or without transformers 4's ``text_model.`` level) under ``prefix``.

    The default is SD 1.x's ``cond_stage_model``; SDXL keeps the same Hugging Face names under its first embedder.
    """
    out = {}
    for key, value in state.items():
        key = key.removeprefix("text_model.")
        if key == "embeddings.position_ids":
            continue
        out[prefix + key] = value
    return out
