# StashQ: the two commands of the README, and the benchmarks.
.PHONY: install demo test lint bench bench-stream bench-parallel bench-beat bench-encryption \
	bench-rows

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

# The suite of issue 8 (256 and 1024 MiB); the optional 4 GiB size:
#   make bench BENCH_ARGS="--sizes 256,1024,4096"
BENCH_ARGS ?=
bench: install
	$(PY) -m benchmarks.bench_backup $(BENCH_ARGS)

bench-stream: install
	$(PY) -m benchmarks.bench_stream

bench-parallel: install
	$(PY) -m benchmarks.bench_parallel

bench-beat: install
	$(PY) -m benchmarks.bench_beat

bench-encryption: install
	$(PY) -m benchmarks.bench_encryption

bench-rows: install
	$(PY) -m benchmarks.bench_rows
