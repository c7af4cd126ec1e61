#!/usr/bin/env bash
# CI check of deploy/ (called by .ci/run): Kubernetes manifests against the
# schemas kubernetes-validate ships (offline once installed), the compose
# file, the collector config, the Dockerfiles' structure, the bootstrap
# scripts' syntax. No Docker daemon or cluster needed. Details: deploy/validate.py.
set -euo pipefail
cd "$(dirname "$0")/.."

# kubernetes-validate 1.37.0 ships schemas for Kubernetes 1.25 to 1.37.
KUBERNETES_VERSION=1.34.0
KUBERNETES_VALIDATE=1.37.0
PYYAML=6.0.3
venv=target/deploy-venv

installed() {
    "$venv/bin/python" - "$KUBERNETES_VALIDATE" "$PYYAML" 2>/dev/null <<'PY'
import sys
from importlib.metadata import version
sys.exit(0 if (version("kubernetes-validate"), version("pyyaml")) == tuple(sys.argv[1:]) else 1)
PY
}
if ! installed; then
    echo "deploy/validate.sh: installing kubernetes-validate $KUBERNETES_VALIDATE and PyYAML $PYYAML into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "kubernetes-validate==$KUBERNETES_VALIDATE" "pyyaml==$PYYAML"
    installed || { echo "deploy/validate.sh: the venv does not hold the pinned versions" >&2; exit 1; }
fi

for script in deploy/bootstrap/*.sh; do
    sh -n "$script" || { echo "deploy/validate.sh: $script: syntax error" >&2; exit 1; }
done

"$venv/bin/python" deploy/validate.py "$KUBERNETES_VERSION"
