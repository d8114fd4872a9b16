# StashQ: the two commands of the README, and the benchmarks.
.PHONY: install demo test lint bench bench-stream bench-parallel bench-beat bench-encryption \
	bench-index bench-pitr \
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

# One line per test file with the percentage done (-q printed a dot line every ~40 s).
test: lint
	$(PY) -m pytest

# The suite of issue 8 (256 and 1024 MiB); the optional 4 GiB size:
#   make bench BENCH_ARGS="--sizes 256,1024,4096"
# then issue 13's seven daily backups under four change patterns (format 2, 3, restic):
#   make bench DEDUP_ARGS="--size-mib 64"
BENCH_ARGS ?=
DEDUP_ARGS ?=
bench: install
	$(PY) -m benchmarks.bench_backup $(BENCH_ARGS)
	$(PY) -m benchmarks.bench_dedup $(DEDUP_ARGS)

bench-stream: install
	$(PY) -m benchmarks.bench_stream

bench-parallel: install
	$(PY) -m benchmarks.bench_parallel

bench-beat: install
	$(PY) -m benchmarks.bench_beat

bench-encryption: install
	$(PY) -m benchmarks.bench_encryption

bench-index: install
	$(PY) -m benchmarks.bench_index

# Point-in-time recovery: archive lag under steady writes, replay vs mariadb-binlog | mariadb
#   make bench-pitr BENCH_ARGS="--rate 100 --transactions 40000"
bench-pitr: install
	$(PY) -m benchmarks.bench_pitr $(BENCH_ARGS)

bench-rows: install
	$(PY) -m benchmarks.bench_rows
