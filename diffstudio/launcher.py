"""The ``diffstudio`` entry point: no arguments (or ``gui``) opens the app, anything else is the
headless CLI. Kept apart so that ``cli`` never imports the GUI (DESIGN.md's layering)."""

from __future__ import annotations

import sys
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """The process's exit code: no arguments, ``gui`` or an option other than ``-h/--help`` opens
    the app (:func:`diffstudio.gui.app.run_app`); anything else runs the CLI (:func:`diffstudio.cli.main`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] == "gui" or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        from diffstudio.gui.app import run_app

        return run_app(argv[1:] if argv and argv[0] == "gui" else argv)
    from diffstudio.cli import main as cli_main

    return cli_main(argv)
