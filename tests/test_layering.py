"""Nothing below the GUI imports Qt, and layers point down only (DESIGN.md)."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_hold():
    exe = shutil.which("lint-imports")
    assert exe, "import-linter is part of the test extra"
    r = subprocess.run([exe, str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 kept, 0 broken" in r.stdout


def test_headless_modules_load_without_qt_or_diffusers():
    code = (
        "import sys, pkgutil, importlib, diffstudio\n"
        "for pkg in ('core', 'data', 'models', 'engine'):\n"
        "    p = importlib.import_module('diffstudio.' + pkg)\n"
        "    for m in pkgutil.iter_modules(p.__path__):\n"
        "        importlib.import_module(f'diffstudio.{pkg}.{m.name}')\n"
        "import diffstudio.cli, diffstudio.commands\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'diffusers'))\n"
        "print(bad)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", f"imported at module load: {r.stdout}"
