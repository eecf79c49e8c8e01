"""Datasets that feed ONNX models: in-memory arrays and the loaders that build them."""
from __future__ import annotations

from qaev.data.arrays import ArrayDataset
from qaev.data.augment import is_image_batch, mirror_images, mirrored
from qaev.data.digits import DIGITS_SPLITS, digits_model_path, load_digits_split
from qaev.data.feeds import LABELS_KEY, load_feed_folder, synthetic_dataset
from qaev.data.imagenet import RESAMPLE, load_imagenet_folder, preprocess_image

__all__ = [
    "ArrayDataset",
    "DIGITS_SPLITS",
    "LABELS_KEY",
    "RESAMPLE",
    "digits_model_path",
    "is_image_batch",
    "load_digits_split",
    "load_feed_folder",
    "load_imagenet_folder",
    "mirror_images",
    "mirrored",
    "preprocess_image",
    "synthetic_dataset",
]
