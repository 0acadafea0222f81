"""Backbones: diffusers UNet2DModel presets for images and an MLP for 2-D toy data.

One contract: ``model(x_t, timestep, cond) -> prediction`` shaped like ``x_t``."""

from diffstudio.models.build import build_model, count_parameters, data_info_of, model_from_spec, model_spec
from diffstudio.models.info import DataInfo

__all__ = ["DataInfo", "build_model", "count_parameters", "data_info_of", "model_from_spec", "model_spec"]
