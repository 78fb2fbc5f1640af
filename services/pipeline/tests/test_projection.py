"""Issue 16 item 5: the export reads only the record's fields.

Documents may carry other fields (written by other clients); whole documents of a few MB each
made FerretDB's replies exceed its 48 MB limit, which failed every run, and cost memory on
MongoDB. The find commands the export sends are watched with pymongo's command monitoring.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pymongo import monitoring
from pymongo.monitoring import CommandFailedEvent, CommandStartedEvent, CommandSucceededEvent

if TYPE_CHECKING:
    from conftest import Harness

PAYLOAD = "x" * (2 * 1024 * 1024)  # 2 MB of fields the table does not hold


class FindCommands(monitoring.CommandListener):
    """Records find commands while ``active`` (pymongo offers no way to unregister)."""

    def __init__(self) -> None:
        self.active = True
        self.finds: list[dict[str, Any]] = []

    def started(self, event: CommandStartedEvent) -> None:
        if self.active and event.command_name == "find":
            self.finds.append(dict(event.command))

    def succeeded(self, event: CommandSucceededEvent) -> None:
        pass

    def failed(self, event: CommandFailedEvent) -> None:
        pass


def test_large_documents_are_exported_by_reading_only_the_record_fields(
    harness: Harness,
) -> None:
    listener = FindCommands()
    monitoring.register(listener)  # applies to clients created from now on (the export's)
    ids = harness.seed(40)
    for record_id in ids:  # 40 x 2 MB: 80 MB in one batch of 1,000 documents
        harness.collection.update_one({"_id": record_id}, {"$set": {"payload": PAYLOAD}})

    try:
        result = harness.run()
    finally:
        listener.active = False
    assert result.success, "whole documents were read"
    assert harness.metadata(result)["rows_inserted"] == 40
    assert harness.delta_frame().columns == [
        "id",
        "score",
        "created_at",
        "updated_at",
        "exported_at",
    ]
    exports = [f for f in listener.finds if f.get("$db") == harness.database]
    assert exports, "no find command of the export was seen"
    for command in exports:
        assert command.get("projection") == {"score": 1, "created_at": 1, "updated_at": 1}
