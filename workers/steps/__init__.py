"""The worker steps a Task resolves to; importing this package registers them.

Each module holds a plain function that does the work and a thin Celery task around
it, registered under an explicit name (the name is the wire contract).
"""

from workers.steps import (
    archive_binlogs,
    dump_upload,
    hooks,
    physical_backup,
    physical_precheck,
    physical_restore,
    precheck,
    push_metrics,
    restore,
    restore_drill,
    retention,
    update_status,
)

__all__ = ["archive_binlogs", "dump_upload", "hooks", "physical_backup", "physical_precheck",
           "physical_restore", "precheck", "push_metrics", "restore", "restore_drill",
           "retention", "update_status"]
