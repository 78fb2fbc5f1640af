"""Table maintenance after a write: compaction and the vacuum that removes crash debris.

The vacuum is delta-rs's *full* vacuum: it deletes every file no version inside the retention
uses, including data files no commit ever referenced (those of a run killed before its commit,
or of a concurrent run whose commit lost). On a local table it also deletes the staging files
(``<name>#<n>``) that the object store writes before renaming a finished file, when they are
older than the retention. On S3 an interrupted upload leaves no object, only an incomplete
multipart upload: a bucket lifecycle rule (AbortIncompleteMultipartUpload) removes those.

A retention below ``MIN_RETENTION_HOURS`` is refused unless forced: it would delete files a
running writer has written but not yet committed, and files that readers of older versions
still use.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

from pipeline.delta import DeltaTarget, TargetError, writer_properties

# Delta's default for delta.deletedFileRetentionDuration (one week).
MIN_RETENTION_HOURS = 168
_STAGING = re.compile(r"#\d+$")


class MaintenanceConfigError(ValueError):
    """The run's maintenance options are unsafe; the message names the option to change."""


@dataclass(frozen=True)
class MaintenanceOptions:
    compact: bool = False
    vacuum: bool = False
    vacuum_retention_hours: int = MIN_RETENTION_HOURS
    vacuum_force: bool = False

    def validate(self) -> None:
        """Refuse a short retention unless forced (before the run reads or writes anything)."""
        hours = self.vacuum_retention_hours
        if hours < 0:
            msg = f"vacuum_retention_hours must be >= 0, got {hours}"
            raise MaintenanceConfigError(msg)
        if self.vacuum and hours < MIN_RETENTION_HOURS and not self.vacuum_force:
            msg = (
                f"vacuum_retention_hours={hours} is below {MIN_RETENTION_HOURS} hours: a vacuum "
                "that short deletes files that a running export has written but not yet "
                "committed and files that readers of older versions still use; set "
                "vacuum_force: true to vacuum with it anyway"
            )
            raise MaintenanceConfigError(msg)


def maintain(
    target: DeltaTarget,
    table: DeltaTable,
    options: MaintenanceOptions,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Compact and vacuum as ``options`` say; returns what was done, for the run's metadata."""
    done: dict[str, Any] = {}
    if options.compact:
        metrics = compact(table)
        done["compact_files_added"] = int(metrics.get("numFilesAdded", 0))
        done["compact_files_removed"] = int(metrics.get("numFilesRemoved", 0))
        log(f"compaction: {done['compact_files_removed']} files into {done['compact_files_added']}")
    if options.vacuum:
        hours = options.vacuum_retention_hours
        removed = vacuum(table, hours)
        staging = remove_staging_files(target, hours)
        done["vacuum_files_removed"] = len(removed)
        done["vacuum_staging_files_removed"] = len(staging)
        log(
            f"vacuum: removed {len(removed)} unused data files and {len(staging)} staging "
            f"files older than {hours}h"
        )
    return done


def compact(table: DeltaTable) -> dict[str, Any]:
    """Rewrite small files into bigger ones (a new version only when something was merged)."""
    try:
        return table.optimize.compact(writer_properties=writer_properties())
    except (DeltaError, OSError) as exc:
        msg = f"cannot compact the Delta table at {table.table_uri}: {exc}"
        raise TargetError(msg) from None


def vacuum(table: DeltaTable, retention_hours: int) -> list[str]:
    """Delete every file no version younger than ``retention_hours`` uses; returns the paths.

    ``full``: also files the log never referenced (crash debris), not only removed ones. The
    retention was validated by ``MaintenanceOptions.validate``.
    """
    try:
        return table.vacuum(
            retention_hours=retention_hours,
            dry_run=False,
            enforce_retention_duration=False,
            full=True,
        )
    except (DeltaError, OSError) as exc:
        msg = f"cannot vacuum the Delta table at {table.table_uri}: {exc}"
        raise TargetError(msg) from None


def remove_staging_files(target: DeltaTarget, retention_hours: int) -> list[str]:
    """Delete the object store's staging files (``<name>#<n>``) older than the retention."""
    if not target.is_local:
        return []
    root = target.local_path()
    cutoff = time.time() - retention_hours * 3600
    removed = []
    try:
        for path in root.rglob("*#*"):
            if _STAGING.search(path.name) and path.is_file() and path.stat().st_mtime <= cutoff:
                path.unlink(missing_ok=True)
                removed.append(str(path.relative_to(root)))
    except OSError as exc:
        msg = f"cannot remove staging files of the Delta table at {root}: {exc}"
        raise TargetError(msg) from None
    return sorted(removed)
