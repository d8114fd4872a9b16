# StashQ: the two commands of the README, and the benchmarks.
.PHONY: install demo test lint bench bench-parallel bench-beat bench-encryption

PY := .venv/bin/python

install:
	bash scripts/install.sh

demo: install
	$(PY) scripts/demo.py

lint: install
	.venv/bin/ruff check .
	.venv/bin/mypy
	.venv/bin/lint-imports

test: lint
	$(PY) -m pytest -q

bench: install
	$(PY) -m benchmarks.bench_backup

bench-parallel: install
	$(PY) -m benchmarks.bench_parallel

bench-beat: install
	$(PY) -m benchmarks.bench_beat

bench-encryption: install
	$(PY) -m benchmarks.bench_encryption
