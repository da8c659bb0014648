"""Podman, driven with the kit's own configuration (see `conf`) through its CLI (see `runner`)."""
