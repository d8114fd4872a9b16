"""Benchmarks: reports of how fast StashQ is against baselines measured in the same run.

Not tests: they print numbers and PASS/MISS against the issue's targets, and exit 0.
"""
