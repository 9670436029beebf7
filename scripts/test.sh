#!/usr/bin/env bash
# Runs the whole test suite: unit tests, the `api` integration tests and a compile of the
# benches. The integration tests start their own kinesalite from scripts/kinesalite, validate
# GET /openapi.json with the validator from scripts/openapi, build and run the container image
# with podman (scripts/setup-containers.sh), load a page in headless Chromium
# (scripts/setup-browser.sh), and check the deployment files with
# systemd-analyze and the linters of scripts/setup-packaging-lint.sh. Every test binary runs
# even when an earlier one fails (--no-fail-fast); the exit code is cargo's.
set -euo pipefail

cd "$(dirname "$0")/.."

bash scripts/setup-emulator.sh
bash scripts/setup-openapi-validator.sh
bash scripts/setup-prometheus.sh
bash scripts/setup-containers.sh
bash scripts/setup-packaging-lint.sh
bash scripts/setup-browser.sh

# The browser test (tests/api/browser.rs) skips when chromium is missing only if this is unset:
# here chromium was just installed, so a missing browser is a failure, never a silent skip.
export KINESIS_PROXY_REQUIRE_BROWSER=1

# The tests talk to a local emulator with static credentials: never let the AWS SDK wander off
# to the EC2 instance metadata service looking for a region or credentials.
export AWS_EC2_METADATA_DISABLED=true

echo "==> cargo test --all-targets --no-fail-fast" >&2
cargo test --all-targets --no-fail-fast "$@"
