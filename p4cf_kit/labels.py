"""How the kit marks what it creates, so cleanup touches only its own things."""

from __future__ import annotations

LABEL_KEY = "p4cf"
LABEL_VALUE = "1"
LABEL = f"{LABEL_KEY}={LABEL_VALUE}"
NAME_PREFIX = "p4cf-"
IMAGE_PREFIX = "localhost/p4cf-"

