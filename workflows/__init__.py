"""StashQ's resource model: pure parsing, validation and planning (no I/O)."""
