"""Hooks, run by the hook steps (``workers/steps/hooks.py``).

``run.py`` runs one hook (retries, the outcome); the actions live side by side:
``sql.py`` (statements on the target), ``http.py`` (GET or POST), ``command.py`` (a
command on this host, or in a pod through the store).
"""
