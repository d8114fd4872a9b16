"""The binlog archive source: one archive message per configuration and interval slot.

A configuration with ``spec.binlogArchive`` gets an archive run every
``intervalSeconds``, on slots every beat replica computes alike (multiples of the
interval in unix time). Exactly once without a leader: the replica that moves the
configuration's ``status.binlogArchiveSlot`` from the value it read to the new slot
(a conditional patch, atomic in both stores) sends the message; the others see the
slot taken and move on. A replica that stops between the patch and the send loses that
one slot: the next run, an interval later, archives everything since, as every run does.

Missed slots are not replayed (a run archives all that is new, however long it has
been), and a paused configuration is not archived.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from beat.configurations import ConfigKey, Entry
from workers.state.base import ResourceStore
from workflows.binlogs import archive_slot
from workflows.resources import BackupConfiguration

log = logging.getLogger(__name__)

#: Where a configuration's status records the last archive slot sent (by any replica).
SLOT_FIELD = "binlogArchiveSlot"

Send = Callable[[str, int], object]  #: (``namespace/name``, slot) → queue the run


class ArchiveSource:
    def __init__(self, store: ResourceStore, send: Send) -> None:
        self.store, self.send = store, send
        self._handled: dict[ConfigKey, int] = {}  #: last slot seen taken, per configuration

    def tick(self, entries: Mapping[ConfigKey, Entry], now: float) -> int:
        """Send the due slot of every archiving configuration; how many this replica sent."""
        sent = 0
        for key, entry in entries.items():
            config = entry.config
            spec = config.spec.binlog_archive if config is not None else None
            if config is None or spec is None or not spec.enabled or config.spec.paused:
                continue
            slot = archive_slot(now, spec.interval_seconds)
            if self._handled.get(key, -1) >= slot:
                continue
            try:
                sent += self._claim(key, entry, slot)
            except Exception:
                log.exception("BackupConfiguration %s/%s: archive slot %d not handled; "
                              "retrying next tick", *key, slot)
        return sent

    def _claim(self, key: ConfigKey, entry: Entry, slot: int) -> int:
        namespace, name = key
        seen = entry.status_dict().get(SLOT_FIELD)
        for _ in range(2):  # the status beat holds may be stale: read it once more
            if isinstance(seen, int) and seen >= slot:
                self._handled[key] = seen
                return 0
            won = self.store.patch_status_where(BackupConfiguration, name, namespace,
                                                {SLOT_FIELD: seen}, {SLOT_FIELD: slot})
            if won is not None:
                self._handled[key] = slot
                self.send(f"{namespace}/{name}", slot)
                log.info("queued binlog archive run of %s/%s for slot %d", namespace, name, slot)
                return 1
            seen = self.store.get(BackupConfiguration, name, namespace).status.get(SLOT_FIELD)
        return 0
