"""What the tests, the benchmarks and the demo share to run a real StashQ: servers on
loopback (`devstack.servers`, `python -m devstack.servers up`), worker processes and the
CLI (`devstack.stack`), resources (`devstack.resources`), sample data and comparison.

Not part of the product: nothing under workflows/, workers/ or beat/ imports it.
"""
