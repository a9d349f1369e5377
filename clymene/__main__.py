from clymene.cli import main

raise SystemExit(main())
