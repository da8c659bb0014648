"""One exception type per failure family; every message names the fix."""

from __future__ import annotations


class KitError(Exception):
    """Base of every error the kit raises on purpose (the CLI prints these without a traceback)."""


class ConfigError(KitError):
    """A configuration value is wrong; the message names the field and the fix."""


class PrerequisiteError(KitError):
    """Something the kit needs on the machine is missing; the message says how to install it."""


class PodmanError(KitError):
    """A Podman command failed; carries the command and its stderr."""

    def __init__(self, message: str, command: list[str] | None = None, stderr: str = "") -> None:
        super().__init__(message)
        self.command = command or []
        self.stderr = stderr


class SwitchError(KitError):
    """The switch target could not be started or programmed."""


class MigrationError(KitError):
    """A migration failed in `phase`; the kit rolled back before raising this."""

    def __init__(self, phase: str, message: str) -> None:
        super().__init__(f"migration failed in phase '{phase}': {message}")
        self.phase = phase
