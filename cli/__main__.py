"""`python -m cli ...`: the same as the `switchyard` script (tests spawn servers this way)."""

from cli.main import main

raise SystemExit(main())
