"""StashQ workers: the Celery app, its steps, and the engine and storage adapters."""
