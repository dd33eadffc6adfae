"""LoRA files: diffusers and kohya/WebUI formats, their metadata, reading either back, and which keys ComfyUI and
A1111 (FLUX.1: ComfyUI and Forge, ``flux_keys.py``) load (``check.py``).

The names below are imported on first use, so ``studio.py inspect`` (``studio/cli/lora.py``) registers without torch.
"""
from __future__ import annotations

from studio.util.lazy import lazy_exports

# The file name diffusers' ``load_lora_weights(folder)`` reads: a run folder's and a checkpoint's LoRA.
DIFFUSERS_WEIGHT_NAME = "pytorch_lora_weights.safetensors"

_WHERE = {
    "save_diffusers_lora": "formats", "save_kohya_lora": "formats", "load_lora_file": "formats",
    "LoraFormatError": "formats", "read_lora_info": "info", "LoraInfo": "info",
    "build_kohya_metadata": "kohya", "kohya_module_map": "kohya",
}

__all__ = list(_WHERE)

__getattr__ = lazy_exports(__name__, _WHERE)
