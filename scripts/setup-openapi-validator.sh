#!/usr/bin/env bash
# Installs the OpenAPI validator that tests/api/openapi.rs runs on the proxy's GET /openapi.json:
# openapi-spec-validator (PyPI), with every dependency pinned in scripts/openapi/requirements.txt,
# into a virtual environment at scripts/openapi/.venv (git-ignored). A fresh machine has python3
# with pip and venv. Idempotent and silent when the install is already current: it reinstalls
# only when the venv is missing or requirements.txt changed since.
set -euo pipefail

cd "$(dirname "$0")/openapi"

if ! command -v python3 >/dev/null 2>&1; then
  echo "setup-openapi-validator: python3 not found; install Python 3 (>= 3.9) with venv" >&2
  exit 1
fi

stamp_file=.venv/.kinesis-proxy-setup-stamp
wanted_stamp="$(sha256sum requirements.txt | cut -d' ' -f1)"

if [[ -x .venv/bin/openapi-spec-validator && -f "$stamp_file" && "$(cat "$stamp_file")" == "$wanted_stamp" ]]; then
  exit 0
fi

echo "setup-openapi-validator: installing openapi-spec-validator into scripts/openapi/.venv" >&2
rm -rf .venv
python3 -m venv .venv
.venv/bin/pip install --disable-pip-version-check --no-input --quiet --no-deps -r requirements.txt

# Fail here, not in the test, if the validator cannot run.
.venv/bin/openapi-spec-validator --version >/dev/null

echo "$wanted_stamp" >"$stamp_file"
