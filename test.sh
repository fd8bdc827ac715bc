#!/usr/bin/env bash
# The whole test suite, integration tests against the real embedded models included.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
source scripts/sandbox-tools.sh
source scripts/browser-tools.sh
exec python -m pytest "$@"
