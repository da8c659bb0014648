"""One exception type per failure family; every message names the fix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:   # types the errors carry; errors.py imports nothing at run time
    import grpc

    from p4cf_kit.migration.record import MigrationRecord


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


class HostToolError(KitError):
    """A host command (ip, nft, ethtool, nsenter) failed; carries the command and its stderr."""

    def __init__(self, message: str, command: Sequence[str], stderr: str = "") -> None:
        super().__init__(message)
        self.command = list(command)
        self.stderr = stderr


class SwitchError(KitError):
    """The switch target could not be started or programmed."""


class OffloadUnavailable(KitError):
    """The embedded switch's kernel fast path cannot run here; the message says why (the user
    path still works)."""


class P4RuntimeError(KitError):
    """A request the embedded switch's P4Runtime server refuses; `code` is the canonical gRPC
    code the specification asks for (the server answers with it)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class LabBusy(KitError):
    """The lab is locked by another operation and we were told not to wait."""


class MigrationError(KitError):
    """A migration failed in `phase`; the kit rolled back before raising this. `record` is
    what the migration did up to the failure (its `failed_phase`, `error`, `rolled_back`)."""

    def __init__(self, phase: str, message: str, record: MigrationRecord | None = None) -> None:
        super().__init__(f"migration failed in phase '{phase}': {message}")
        self.phase = phase
        self.record = record


class InjectedFailure(KitError):
    """Raised on purpose after a phase did its work (fail_at / P4CF_MIGRATION_FAIL_AT)."""


class RewriteError(KitError):
    """A checkpoint could not be rewritten (missing or unreadable images)."""


class TransferError(KitError):
    """The images did not reach the destination whole; the message says where it broke."""


class RollbackError(KitError):
    """Rollback itself failed; the message says where the backend is left."""
