"""Event sources: the CLI, the cron scheduler and the Kubernetes watcher. All of them
create sessions and hand them to ``dispatch``, the one path into the queue."""
