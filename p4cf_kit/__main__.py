"""`python -m p4cf_kit` is the same as the `p4cf` command."""

from p4cf_kit.cli import main

raise SystemExit(main())
