"""Base-model loading (embedded toy world, diffusers folders, single-file SD 1.x checkpoints, hub ids)."""
from .families import Components
from .loading import ModelLoadError, default_model_path, load_components, load_pipeline
from .single_file import export_single_file

__all__ = ["Components", "ModelLoadError", "load_components", "load_pipeline", "default_model_path", "export_single_file"]
