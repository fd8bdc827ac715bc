#!/usr/bin/env bash
# The whole test suite, integration tests against the real embedded models included.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ] && ! command -v bwrap >/dev/null; then
    apt-get install -y -qq bubblewrap >/dev/null 2>&1 || echo "kisystem: bubblewrap not installed; the sandbox falls back to unshare" >&2
fi
exec python -m pytest "$@"
