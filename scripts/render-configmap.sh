#!/usr/bin/env bash
# Writes deploy/kubernetes/common/configmap.yaml from the top-level config.toml, so the
# Kubernetes manifests ship exactly the documented defaults (tests/api/packaging.rs fails when
# the two differ: run this script after changing config.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
{
    echo "# Generated from config.toml by scripts/render-configmap.sh: do not edit; change"
    echo "# config.toml, or override settings with KINESIS_PROXY__* variables in the pod spec."
    echo "apiVersion: v1"
    echo "kind: ConfigMap"
    echo "metadata:"
    echo "  name: kinesis-proxy-config"
    echo "  namespace: kinesis-proxy"
    echo "  labels:"
    echo "    app.kubernetes.io/name: kinesis-proxy"
    echo "data:"
    echo "  config.toml: |"
    sed -e 's/^/    /' -e 's/^    $//' config.toml
} >deploy/kubernetes/common/configmap.yaml
