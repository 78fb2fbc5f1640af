"""Issue 16 item 6: runs starting together do not trip over each other's write probe.

Before, every run created and removed the same ``.pipeline-write-probe`` file in the table's
folder, and a run whose probe another run had just removed failed with "No such file or
directory". Here four processes probe one folder 1,000 times each, all at once.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROCESSES = 4
ROUNDS = 1_000
PROBE = """
import json, sys
from pipeline.delta import DeltaTarget, TargetError, ensure_writable
errors = []
for _ in range(int(sys.argv[2])):
    try:
        ensure_writable(DeltaTarget(sys.argv[1]))
    except TargetError as exc:
        errors.append(str(exc))
print(json.dumps(errors))
"""


def test_concurrent_write_probes_never_fail(tmp_path: Path) -> None:
    table = str(tmp_path / "records")
    command = [sys.executable, "-c", PROBE, table, str(ROUNDS)]
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(PROCESSES)
    ]
    errors: list[str] = []
    for process in processes:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0
        errors += json.loads(output)
    assert errors == [], f"{len(errors)} of {PROCESSES * ROUNDS} probes failed: {errors[:3]}"
    assert list(Path(table).iterdir()) == []  # every probe was removed
