from njtui.cli import main

raise SystemExit(main())
