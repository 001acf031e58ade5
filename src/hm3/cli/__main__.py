"""`python -m hm3.cli ...` runs the `hm3` command."""

from hm3.cli.main import main

raise SystemExit(main())
