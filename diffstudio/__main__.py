from diffstudio.launcher import main

raise SystemExit(main())
