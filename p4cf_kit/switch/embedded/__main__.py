"""`python -m p4cf_kit.switch.embedded`: run the embedded switch (see `target.main`)."""

from p4cf_kit.switch.embedded.target import main

raise SystemExit(main())
