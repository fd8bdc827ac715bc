#!/usr/bin/env bash
# The main job on the embedded default fleet; bootstraps .venv and model weights itself.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
source scripts/sandbox-tools.sh
exec kisystem demo "$@"
