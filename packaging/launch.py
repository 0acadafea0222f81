"""PyInstaller's entry script: the same dispatch as the `diffstudio` console script."""

from diffstudio.launcher import main

raise SystemExit(main())
