from diffstudio.cli import main

raise SystemExit(main())
