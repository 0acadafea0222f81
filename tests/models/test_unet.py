"""UNet presets: sizes, attention placement, the model contract and spec round trips."""

import json

import pytest
import torch

from diffstudio.models import DataInfo, count_parameters, model_from_spec
from diffstudio.models.unet import UNetModel, unet_config, unet_spec


def make(preset="tiny", channels=1, resolution=8, num_classes=0):
    torch.manual_seed(0)
    return UNetModel(unet_spec(preset, DataInfo("image", channels, resolution, num_classes), num_classes)).eval()


@pytest.mark.parametrize("preset,lo,hi", [("tiny", 0.25e6, 1e6), ("small", 1e6, 10e6), ("base", 10e6, 100e6)])
def test_preset_sizes_at_32x32_grayscale(preset, lo, hi):
    spec = unet_spec(preset, DataInfo("image", 1, 32, 0))
    n = count_parameters(UNetModel(spec))
    assert lo <= n <= hi, n


@pytest.mark.parametrize("preset", ["tiny", "small", "base"])
@pytest.mark.parametrize("resolution", [8, 16, 28, 32, 64])
def test_block_layout(preset, resolution):
    cfg = unet_config(preset, 3, resolution)
    levels = len(cfg["block_out_channels"])
    if resolution == 8:
        assert levels == 2
    assert resolution % 2 ** (levels - 1) == 0
    assert all(c % cfg["norm_num_groups"] == 0 for c in cfg["block_out_channels"])
    attn = [t.startswith("Attn") for t in cfg["down_block_types"]]
    assert [t.startswith("Attn") for t in cfg["up_block_types"]] == attn[::-1]
    assert not attn[0]  # never attention at full resolution
    if preset == "tiny":
        assert not any(attn) and cfg["add_attention"] is False
    else:
        assert any(attn) and cfg["add_attention"] is True
        assert all(resolution // 2**i <= 16 for i, a in enumerate(attn) if a)


@pytest.mark.parametrize("channels,resolution", [(1, 8), (3, 16), (1, 28), (3, 5)])
def test_forward_keeps_the_shape(channels, resolution):
    model = make(channels=channels, resolution=resolution)
    x = torch.randn(3, channels, resolution, resolution)
    with torch.no_grad():
        y = model(x, torch.tensor([0.0, 499.5, 999.0]), None)
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_class_conditioning_and_the_null_label():
    model = make(num_classes=10)
    assert model.unet.config.num_class_embeds == 11
    x, t = torch.randn(4, 1, 8, 8), torch.full((4,), 500.0)
    with torch.no_grad():
        none = model(x, t, None)
        null = model(x, t, torch.full((4,), 10, dtype=torch.int64))
        some = model(x, t, torch.tensor([0, 1, 2, 3]))
    assert torch.equal(none, null)
    assert not torch.allclose(none, some)


def test_unconditional_model_ignores_cond():
    model = make()
    assert model.unet.config.num_class_embeds is None
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([10.0, 20.0])
    with torch.no_grad():
        assert torch.equal(model(x, t, None), model(x, t, torch.tensor([1, 2])))


def test_spec_is_json_and_rebuilds_the_same_network():
    model = make(num_classes=3)
    spec = json.loads(json.dumps(model.spec))
    assert spec == model.spec
    again = model_from_spec(spec).eval()
    again.load_state_dict(model.state_dict())
    x, t, c = torch.randn(2, 1, 8, 8), torch.tensor([3.0, 900.0]), torch.tensor([0, 2])
    with torch.no_grad():
        assert torch.equal(model(x, t, c), again(x, t, c))
    assert model.unet.__class__.__name__ == "UNet2DModel"


def test_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="preset"):
        unet_config("huge", 1, 32)
