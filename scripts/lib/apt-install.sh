#!/usr/bin/env bash
# Sourced by the setup-*.sh scripts: `apt_install PACKAGE...` installs Debian packages with
# apt-get, quietly and without prompts, as root or through sudo, so each script only says which
# packages it needs and when. Fails with a message naming the packages when neither root nor
# sudo is available (CI runs as root).

apt_install() {
  local runner=()
  if [[ "$(id -u)" != 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "apt_install: need root or sudo to install $*" >&2
      return 1
    fi
    runner=(sudo)
  fi
  echo "installing $* with apt-get" >&2
  "${runner[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  "${runner[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
