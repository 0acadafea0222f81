"""Build a backbone from a run configuration, or rebuild one from its ``spec``.

``config`` is an :class:`diffstudio.engine.config.Config` (read by duck typing: models sit below
the engine and never import it)."""

from __future__ import annotations

from typing import Any

from torch import nn

from diffstudio.models.info import DataInfo
from diffstudio.models.mlp import MLPModel, mlp_spec
from diffstudio.models.unet import UNetModel, unet_spec


def model_spec(config: Any, data: DataInfo) -> dict[str, Any]:
    """The spec :func:`build_model` builds: the MLP for points, a UNet preset for images.
    Class-conditional only when ``config.model.class_conditional`` and the data has classes."""
    m = config.model
    num_classes = data.num_classes if (m.class_conditional and data.num_classes > 0) else 0
    if data.kind == "points":
        return mlp_spec(data, m.mlp_width, m.mlp_depth, num_classes)
    return unet_spec(m.preset, data, num_classes)


def build_model(config: Any, data: DataInfo) -> nn.Module:
    """A freshly initialised model obeying ``model(x_t, timestep, cond) -> prediction``."""
    return model_from_spec(model_spec(config, data))


def model_from_spec(spec: dict[str, Any]) -> nn.Module:
    """Rebuild the architecture a model's ``.spec`` describes (weights are not part of it).
    Raises ValueError for a spec whose ``kind`` is neither 'unet' nor 'mlp'."""
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if kind == "unet":
        return UNetModel(spec)
    if kind == "mlp":
        return MLPModel(spec)
    raise ValueError(f"model spec: unknown kind {kind!r} (expected 'unet' or 'mlp')")


def data_info_of(model_or_spec: nn.Module | dict[str, Any]) -> DataInfo:
    """The :class:`DataInfo` a model (or spec) was built for."""
    spec = model_or_spec if isinstance(model_or_spec, dict) else model_or_spec.spec
    return DataInfo.from_dict(spec["data"])


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """The number of scalar weights of ``model`` (only those with ``requires_grad`` when ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
