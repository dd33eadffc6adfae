"""Training data: metadata.csv captions, folder checks, aspect-ratio buckets, the image dataset and its sampler.

Names are imported on first use, so the CLI (and ``metadata.csv`` tools) start without importing torch.
"""
from __future__ import annotations

from studio.util.lazy import lazy_exports

_EXPORTS = {
    "assign_bucket": "buckets", "crop_fraction": "buckets", "fit_to_bucket": "buckets", "make_buckets": "buckets",
    "BucketBatchSampler": "dataset", "TrainingImages": "dataset", "collate": "dataset", "load_rgb": "images",
    "IMAGE_EXTENSIONS": "metadata", "CaptionRecord": "metadata", "CaptionTable": "metadata",
    "DatasetError": "metadata", "DatasetProblem": "metadata", "check_dataset": "metadata",
    "load_training_set": "metadata", "read_metadata": "metadata", "write_metadata": "metadata",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
