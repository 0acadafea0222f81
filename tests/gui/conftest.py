"""Qt set-up shared by every GUI test: an offscreen platform, and settings (window layout, recent
files) kept in a temporary folder so tests never read or write the user's."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

from diffstudio.gui.app import protect_singletons  # noqa: E402

# shiboken 6.12 on Python 3.11 drops a reference to None / True / False on every void or bool Qt
# call; without this the suite aborts with "none_dealloc" (see protect_singletons)
protect_singletons()


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory, qapp):
    from PySide6.QtCore import QSettings

    folder = tmp_path_factory.mktemp("qsettings")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    qapp.setOrganizationName("diffstudio-tests")
    qapp.setApplicationName("diffstudio-tests")
    yield


@pytest.fixture
def state():
    from diffstudio.engine.config import Config
    from diffstudio.gui.state import AppState

    return AppState(Config())
