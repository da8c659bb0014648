"""Subcommands of `p4cf`, one module each (see `p4cf_kit.cli`)."""
