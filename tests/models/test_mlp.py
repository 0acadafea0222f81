"""The 2-D MLP: the model contract, the time embedding over 0..1000, conditioning."""

import json

import pytest
import torch

from diffstudio.models import DataInfo, count_parameters, model_from_spec
from diffstudio.models.mlp import MLPModel, mlp_spec, sinusoidal_embedding

POINTS = DataInfo("points", 2, 0, 0)


def test_embedding_distinguishes_timesteps_over_the_whole_range():
    t = torch.tensor([0.0, 0.5, 1.0, 10.0, 500.0, 999.0, 1000.0])
    e = sinusoidal_embedding(t, 64)
    assert e.shape == (7, 64) and torch.isfinite(e).all()
    d = torch.cdist(e, e) + torch.eye(7) * 10
    assert d.min() > 0.1
    assert sinusoidal_embedding(t, 7).shape == (7, 7)  # odd widths are padded


@pytest.mark.parametrize("width,depth", [(16, 1), (64, 3)])
def test_shape_and_size_follow_width_and_depth(width, depth):
    model = MLPModel(mlp_spec(POINTS, width, depth))
    x = torch.randn(5, 2)
    y = model(x, torch.rand(5) * 1000, None)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert count_parameters(model) == (2 * width + width) + 2 * (width * width + width) + depth * (width * width + width) + (width * 2 + 2)


def test_conditioning_with_null_label():
    torch.manual_seed(0)
    model = MLPModel(mlp_spec(DataInfo("points", 2, 0, 3), 32, 2, num_classes=3))
    x, t = torch.randn(4, 2), torch.full((4,), 100.0)
    assert torch.equal(model(x, t, None), model(x, t, torch.full((4,), 3)))
    assert not torch.allclose(model(x, t, None), model(x, t, torch.zeros(4, dtype=torch.int64)))


def test_spec_round_trip():
    model = MLPModel(mlp_spec(POINTS, 32, 2))
    again = model_from_spec(json.loads(json.dumps(model.spec)))
    again.load_state_dict(model.state_dict())
    x, t = torch.randn(3, 2), torch.tensor([1.0, 2.0, 3.0])
    assert torch.equal(model(x, t, None), again(x, t, None))


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="width"):
        mlp_spec(POINTS, 1, 3)
