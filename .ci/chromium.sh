#!/usr/bin/env bash
# Debian's headless Chromium and its driver for the console's browser tests: installed from
# Debian's packages when missing (as .ci/postgres.sh does PostgreSQL).
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
echo "chromium.sh: Chromium is missing: installing chromium and chromium-driver" >&2
sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
