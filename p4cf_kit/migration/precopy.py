"""Pre-copy migration: most of the backend's memory is copied while it still runs.

How (CRIU's iterative migration, driven through Podman and the kit's gated runtime):
  - rounds, while the backend serves (inside `prepare`, outside the downtime): each is a
    `podman container checkpoint --pre-checkpoint` (runc `--pre-dump`, CRIU `pre-dump` with
    memory tracking) into the source's `userdata/pre-checkpoint`, renamed to
    `userdata/pre-copy-N` afterwards. Round 1 copies every page; round N > 1 gets
    `--parent-path ../pre-copy-(N-1)` through the gated runtime's extra-options file, so
    CRIU writes only the pages dirtied since the previous round (soft-dirty bits).
    Rounds stop at MAX_ROUNDS, once a round copied less than CONVERGED_BYTES, or when a
    round copied no less than the one before (the backend dirties pages as fast as they
    are copied: one more round would not shorten the final dump).
  - the final dump is the usual in-place checkpoint (phases.start_checkpoint) with
    `--parent-path ../pre-copy-LAST`: runc then asks CRIU for memory tracking, and CRIU
    writes only what changed since the last round, inside the downtime.
  - the restore is the usual staged one behind its gate. The final images move into the
    landing folder as files (phases.move_images); their `parent` link is recreated there
    pointing at the source's rounds (absolute), which CRIU follows for the older pages.

Why the source keeps its rounds until the end: a rollback restores the source in place from
images whose `parent` link names them (return_to_source). They go with the source container
(cleanup removes it) or, after a failure, in `close()`. A pre-dump round that fails leaves
the backend running at the source (CRIU thaws it); `close()` then removes the rounds, the
pre-checkpoint folder and the extra-options file, so nothing of the attempt is left behind.

It needs the kernel to track dirty pages (CONFIG_MEM_SOFT_DIRTY): modes.support says where.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from p4cf_kit.errors import PodmanError
from p4cf_kit.migration import phases
from p4cf_kit.migration.lazy import container_id_of
from p4cf_kit.migration.record import MigrationRecord
from p4cf_kit.migration.stop_and_copy import StopAndCopy
from p4cf_kit.podman.restore_gate import extra_args_file
from p4cf_kit.podman.runner import podman

MAX_ROUNDS = 3                    # pre-dump rounds at most
CONVERGED_BYTES = 1 << 20         # a round that copied less: the dirty set is small, stop
PODMAN_ROUND_DIR = "pre-checkpoint"    # where Podman's --pre-checkpoint writes (in userdata)
PARENT_LINK = "parent"            # CRIU's link from an images folder to its parent's
ROUND_TIMEOUT_S = 120.0
# What runc 1.1 logs when CRIU's feature check (memory tracking, for --pre-dump) fails; Podman
# 4.3 passes it on with exit 125 and does not check first (seen on a kernel without soft-dirty).
MISSING_FEATURES = "CRIU is missing features"


def explain_round_failure(text: str) -> str:
    """A hint for a failed round's message: Podman's words name no feature when it is memory
    tracking that is missing, so say which one and where to look."""
    if MISSING_FEATURES in text:
        return (" (the missing feature is memory tracking: this kernel does not track dirty pages; "
                "`p4cf doctor` shows it under migration-modes; use --mode stop-and-copy or lazy)")
    return ""


def round_dir(round_no: int) -> str:
    """The folder (in the source's userdata) that keeps pre-dump round `round_no` (1-based)."""
    if round_no < 1:
        raise ValueError(f"pre-dump rounds count from 1, not {round_no}")
    return f"pre-copy-{round_no}"


def parent_args(previous_round: int) -> str:
    """runc options making a dump (pre-dump or final) copy only the pages dirtied since round
    `previous_round`; the path is relative to the images folder, as runc wants it. Round 0
    (no previous round) gives no options: a full pre-dump."""
    return "" if previous_round == 0 else f"--parent-path ../{round_dir(previous_round)}"


def another_round(copied: list[int], max_rounds: int = MAX_ROUNDS,
                  converged_bytes: int = CONVERGED_BYTES) -> bool:
    """Whether to pre-dump once more, given the bytes each round so far copied."""
    if len(copied) >= max_rounds:
        return False
    if copied and copied[-1] < converged_bytes:
        return False
    return not (len(copied) >= 2 and copied[-1] >= copied[-2])


def folder_bytes(folder: Path) -> int:
    """Bytes of the regular files in `folder` (one round's images)."""
    return sum(entry.stat(follow_symlinks=False).st_size for entry in os.scandir(folder)
               if entry.is_file(follow_symlinks=False))


def round_bytes_text(copied: list[int]) -> str:
    """Bytes per round for the record's CSV column: `;`-separated, in round order."""
    return ";".join(str(n) for n in copied)


@dataclass
class PreCopyTransfer(StopAndCopy):
    """One pre-copy migration's memory path: the rounds at the source, the final dump's parent
    (the hooks it does not need are stop-and-copy's)."""

    record: MigrationRecord | None = None    # migrate.py hands it over: rounds are written there
    max_rounds: int = MAX_ROUNDS
    copied: list[int] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def source_id(self) -> str:
        return container_id_of(self.plan.src_images)

    @property
    def userdata(self) -> Path:
        return self.plan.src_images.parent

    def _set_checkpoint_args(self, args: str) -> None:
        path = extra_args_file(self.source_id, "checkpoint")
        if not args:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(args + "\n")
        if path not in self.files:
            self.files.append(path)

    def _note(self) -> None:
        if self.record is not None:
            self.record.precopy_rounds = len(self.copied)
            self.record.precopy_round_bytes = round_bytes_text(self.copied)

    def pre_dump(self, round_no: int) -> int:
        """One round while the backend runs; returns the bytes it copied. PodmanError naming
        the round and Podman's words when it fails (the backend then still runs at the source)."""
        self._set_checkpoint_args(parent_args(round_no - 1))
        written = self.userdata / PODMAN_ROUND_DIR
        shutil.rmtree(written, ignore_errors=True)
        try:
            podman("container", "checkpoint", "--pre-checkpoint", self.plan.src_container,
                   timeout=ROUND_TIMEOUT_S)
        except PodmanError as exc:
            raise PodmanError(f"pre-copy round {round_no} of {self.plan.src_container} failed (the backend "
                              f"keeps running at {self.plan.src.name}): {exc}{explain_round_failure(str(exc))}",
                              exc.command, exc.stderr) from exc
        finally:
            self._set_checkpoint_args("")
        kept = self.userdata / round_dir(round_no)
        os.replace(written, kept)
        return folder_bytes(kept)

    def staged(self, staged: phases.StagedRestore) -> None:
        """After the landing is staged: pre-dump until another round would not help, then point
        the final dump at the last round."""
        while another_round(self.copied, self.max_rounds):
            self.copied.append(self.pre_dump(len(self.copied) + 1))
            self._note()
        self._set_checkpoint_args(parent_args(len(self.copied)))

    def serve(self, staged: phases.StagedRestore, timeout: float) -> None:
        """The final images are in the landing folder, but not their link to the rounds (only
        files move): link it to the source's last round, which stays where it is."""
        link = staged.images / PARENT_LINK
        link.unlink(missing_ok=True)
        link.symlink_to(self.userdata / round_dir(len(self.copied)))

    def close(self) -> None:
        """Remove the extra runc options and the rounds at the source; never raises. (After a
        success the source container, rounds included, is gone already.)"""
        for path in self.files:
            path.unlink(missing_ok=True)
        for round_no in range(1, len(self.copied) + 2):
            shutil.rmtree(self.userdata / round_dir(round_no), ignore_errors=True)
        shutil.rmtree(self.userdata / PODMAN_ROUND_DIR, ignore_errors=True)
