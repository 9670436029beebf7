#!/usr/bin/env bash
# Runs kinesis-proxy against a local Kinesis emulator, with no AWS account.
#
#   scripts/run-local.sh [--config PATH] [more proxy args...]
#
# Starts kinesalite on 127.0.0.1:${KINESALITE_PORT:-4567} with its data in .emulator/data (kept
# between runs), creates every exact stream name in the config's `[streams] allow` list (patterns
# with `*` are skipped) with ${KINESALITE_SHARDS:-4} shards, then runs the proxy in release mode
# pointed at it. All arguments go to the proxy; `--config config.toml` is added when none is given.
# KINESIS_PROXY__STREAMS__ALLOW="a,b" overrides the file's allow list here as in the proxy.
#
# Lifetime: the emulator reads its stdin from a pipe whose only writer is handed to the proxy
# process, and exits when that pipe closes. So it lives exactly as long as the proxy, however the
# proxy ends (Ctrl-C, SIGTERM, crash, SIGKILL of this script). It runs in its own session so that
# Ctrl-C reaches only the proxy, which can then drain its queues into a still-running emulator.
set -euo pipefail

caller_dir="$(pwd)"
cd "$(dirname "$0")/.."
repo_root="$(pwd)"

# Find the config file among the proxy's arguments, resolved against the caller's directory.
config_arg=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --config)
      if ((i + 1 >= ${#args[@]})); then
        echo "run-local: --config needs a path" >&2
        exit 2
      fi
      config_arg="${args[i + 1]}"
      ;;
    --config=*)
      config_arg="${args[i]#--config=}"
      ;;
  esac
done
if [[ -n "$config_arg" ]]; then
  if [[ "$config_arg" == /* ]]; then config_file="$config_arg"; else config_file="$caller_dir/$config_arg"; fi
  proxy_args=("$@")
else
  config_file="$repo_root/config.toml"
  proxy_args=(--config "$config_file" "$@")
fi
if [[ ! -f "$config_file" ]]; then
  echo "run-local: config file not found: $config_file" >&2
  exit 2
fi

port="${KINESALITE_PORT:-4567}"
shards="${KINESALITE_SHARDS:-4}"

# Exact stream names from the allow list (the env override wins, as it does in the proxy).
mapfile -t streams < <(python3 - "$config_file" <<'PY'
import os, re, sys, tomllib

with open(sys.argv[1], "rb") as f:
    config = tomllib.load(f)
env = os.environ.get("KINESIS_PROXY__STREAMS__ALLOW")
if env is not None:
    allow = [s.strip() for s in env.split(",")]
else:
    allow = config.get("streams", {}).get("allow", [])
for name in allow:
    if not isinstance(name, str) or "*" in name or not name:
        continue
    if re.fullmatch(r"[a-zA-Z0-9_.-]{1,128}", name):
        print(name)
    else:
        print(f"run-local: skipping invalid stream name {name!r}", file=sys.stderr)
PY
)

bash scripts/setup-emulator.sh

mkdir -p .emulator/data
ready_file=.emulator/kinesalite.ready
log_file=.emulator/kinesalite.log
rm -f "$ready_file"

stream_args=()
for name in "${streams[@]}"; do
  stream_args+=(--stream "$name:$shards")
done

# fd 3 is the write end of the emulator's stdin; `exec cargo` below hands it to the proxy.
exec 3> >(exec setsid node scripts/kinesalite/server.js --port "$port" --path .emulator/data \
  "${stream_args[@]}" >"$ready_file" 2>"$log_file")
kinesalite_pid=$!

deadline=$((SECONDS + 30))
until grep -q '^READY ' "$ready_file" 2>/dev/null; do
  if ! kill -0 "$kinesalite_pid" 2>/dev/null || ((SECONDS > deadline)); then
    echo "run-local: kinesalite did not start on 127.0.0.1:$port (is the port taken?); its log:" >&2
    cat "$log_file" >&2 || true
    kill "$kinesalite_pid" 2>/dev/null || true
    exit 1
  fi
  sleep 0.1
done
endpoint="$(sed -n 's/^READY //p' "$ready_file" | head -n 1)"

echo "run-local: kinesalite at $endpoint (log: .emulator/kinesalite.log), streams: ${streams[*]:-none}" >&2

export KINESIS_PROXY__KINESIS__ENDPOINT_URL="$endpoint"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-local}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-local}"
export AWS_REGION="${AWS_REGION:-us-west-2}"
export AWS_EC2_METADATA_DISABLED="${AWS_EC2_METADATA_DISABLED:-true}"

# config.toml requires API keys and ships none (keys are secrets). Unless keys are configured,
# this local run gets a well-known development key, printed here so the README's curl works.
if [[ -z "${KINESIS_PROXY__AUTH__KEYS:-}" ]] && python3 - "$config_file" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    auth = tomllib.load(f).get("auth", {})
sys.exit(0 if auth.get("required", True) and not auth.get("keys") else 1)
PY
then
  export KINESIS_PROXY__AUTH__KEYS="local:local-dev-key-0123456789"
  echo "run-local: development API key for this run: x-api-key: local-dev-key-0123456789" >&2
fi

# cargo replaces itself with the proxy (exec on Unix), so the proxy keeps fd 3 open until it exits.
exec cargo run --release --bin kinesis-proxy -- "${proxy_args[@]}"
