"""LoRA files: diffusers and kohya/WebUI formats, their metadata, and reading either back."""
from .formats import LoraFormatError, load_lora_file, save_diffusers_lora, save_kohya_lora
from .info import LoraInfo, read_lora_info
from .kohya import build_kohya_metadata, kohya_module_map

__all__ = [
    "save_diffusers_lora", "save_kohya_lora", "build_kohya_metadata", "kohya_module_map", "load_lora_file",
    "read_lora_info", "LoraFormatError", "LoraInfo",
]
