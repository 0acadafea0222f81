"""Datasets for diffstudio: image folders, built-in image sets, 2-D toys, inspection.

Qt-free. Images are float32 (N, C, H, W) in [-1, 1]; toy points are float32 (N, 2), standardised.
"""

from diffstudio.data.builtin import (
    BUILTIN_IMAGE_DATASETS,
    SHAPE_KINDS,
    BuiltinInfo,
    make_builtin,
    make_digits,
    make_lighting,
    make_lighting_flat,
    make_shapes,
)
from diffstudio.data.dataset import DatasetKind, InMemoryDataset, SkippedFile
from diffstudio.data.decode import DEFAULT_MAX_PIXELS, decode_image
from diffstudio.data.errors import DatasetError, LoadCancelled
from diffstudio.data.folder_cache import cache_dir
from diffstudio.data.folder_scan import IMAGE_EXTENSIONS
from diffstudio.data.image_folder import load_image_folder
from diffstudio.data.inspect import format_inspection, inspect_source
from diffstudio.data.lighting import LIGHTING_BRIGHTNESS_RANGE, lighting_brightness_range
from diffstudio.data.pixels import unit_range_to_uint8
from diffstudio.data.registry import known_names, list_builtin, load_dataset
from diffstudio.data.toys import TOY_DATASETS, gaussians8_mixture, make_toy

__all__ = [
    "BUILTIN_IMAGE_DATASETS",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "LIGHTING_BRIGHTNESS_RANGE",
    "SHAPE_KINDS",
    "TOY_DATASETS",
    "BuiltinInfo",
    "DatasetError",
    "DatasetKind",
    "InMemoryDataset",
    "LoadCancelled",
    "SkippedFile",
    "cache_dir",
    "decode_image",
    "format_inspection",
    "gaussians8_mixture",
    "inspect_source",
    "known_names",
    "lighting_brightness_range",
    "list_builtin",
    "load_dataset",
    "load_image_folder",
    "make_builtin",
    "make_digits",
    "make_lighting",
    "make_lighting_flat",
    "make_shapes",
    "make_toy",
    "unit_range_to_uint8",
]
