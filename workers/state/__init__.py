"""Where resources and session status live: Redis without Kubernetes (``redis.py``)."""
