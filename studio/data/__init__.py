"""Training data: metadata.csv captions, folder checks, aspect-ratio buckets, the image dataset and its sampler."""
from studio.data.buckets import assign_bucket, crop_fraction, fit_to_bucket, make_buckets
from studio.data.dataset import BucketBatchSampler, TrainingImages, collate, load_rgb
from studio.data.metadata import (
    IMAGE_EXTENSIONS,
    CaptionRecord,
    CaptionTable,
    DatasetError,
    DatasetProblem,
    check_dataset,
    load_training_set,
    read_metadata,
    write_metadata,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "BucketBatchSampler",
    "CaptionRecord",
    "CaptionTable",
    "DatasetError",
    "DatasetProblem",
    "TrainingImages",
    "assign_bucket",
    "check_dataset",
    "collate",
    "crop_fraction",
    "fit_to_bucket",
    "load_rgb",
    "load_training_set",
    "make_buckets",
    "read_metadata",
    "write_metadata",
]
