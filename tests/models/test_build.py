"""build_model picks the backbone and conditioning from the config and the data."""

import subprocess
import sys

import pytest
import torch

from diffstudio.engine.config import Config
from diffstudio.models import DataInfo, build_model, count_parameters, data_info_of, model_from_spec
from diffstudio.models.mlp import MLPModel
from diffstudio.models.unet import UNetModel


@pytest.mark.parametrize("flag,classes,expected", [(True, 10, 10), (False, 10, 0), (True, 0, 0)])
def test_conditional_only_when_asked_and_labelled(flag, classes, expected):
    cfg = Config().updated(model={"class_conditional": flag, "preset": "tiny"})
    model = build_model(cfg, DataInfo("image", 1, 8, classes))
    assert isinstance(model, UNetModel) and model.num_classes == expected
    assert model.unet.config.num_class_embeds == (expected + 1 if expected else None)
    assert data_info_of(model) == DataInfo("image", 1, 8, classes)


def test_points_get_the_mlp_sized_by_config():
    cfg = Config().updated(model={"mlp_width": 48, "mlp_depth": 2, "preset": "base"})
    model = build_model(cfg, DataInfo("points", 2, 0, 2))
    assert isinstance(model, MLPModel) and model.width == 48 and len(model.layers) == 2 and model.num_classes == 2
    assert model(torch.randn(3, 2), torch.tensor([0.0, 1.0, 2.0]), torch.tensor([0, 1, 2])).shape == (3, 2)


def test_presets_grow():
    sizes = [count_parameters(build_model(Config().updated(model={"preset": p}), DataInfo("image", 1, 8, 0)))
             for p in ("tiny", "small", "base")]
    assert sizes == sorted(sizes)


def test_bad_inputs():
    with pytest.raises(ValueError, match="kind"):
        model_from_spec({"kind": "transformer"})
    with pytest.raises(ValueError, match="resolution"):
        DataInfo("image", 1, 0, 0)
    with pytest.raises(ValueError, match="kind"):
        DataInfo("audio", 1, 8, 0)
    assert DataInfo("points", 2, None, 0).resolution == 0


def test_data_info_from_a_dataset_like_object():
    class Fake:
        kind, channels, resolution, num_classes = "points", 2, None, 0

    assert DataInfo.from_dataset(Fake()) == DataInfo("points", 2, 0, 0)


def test_importing_models_and_engine_files_does_not_import_diffusers():
    code = ("import sys\n"
            "import diffstudio.models, diffstudio.models.unet, diffstudio.models.build\n"
            "import diffstudio.engine.checkpoint, diffstudio.engine.run_dir, diffstudio.engine.export\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('diffusers', 'PySide6', 'pyqtgraph')))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
