"""Base models: loading (embedded toy world, diffusers folders, single-file checkpoints, hub ids), families and
detection (SD 1.x, SDXL, FLUX.1)."""
from .families import Components
from .loading import ModelLoadError, default_model_path, load_components, load_pipeline, toy_world_models
from .detect import ModelDescription, describe_model
from .single_file import export_single_file

__all__ = ["Components", "ModelLoadError", "load_components", "load_pipeline", "default_model_path", "export_single_file",
           "describe_model", "ModelDescription", "toy_world_models"]
