#!/usr/bin/env bash
# Create .venv and install kisystem with its test and ray extras, once per pyproject change.
# Sourced by ./run.sh and ./test.sh; needs only python3 (>= 3.11).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.kisystem-installed"
want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "error: kisystem needs Python >= 3.11, found $(python3 --version 2>&1)" >&2; exit 2; }

if [ ! -x "$venv/bin/python" ]; then
    echo "kisystem: creating virtual environment in $venv" >&2
    if ! python3 -m venv "$venv" 2>/dev/null; then
        rm -rf "$venv"
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "kisystem: installing python3-venv with apt-get" >&2
            apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
            python3 -m venv "$venv"
        else
            echo "error: python3 -m venv failed; install python3-venv (sudo apt-get install python3-venv)" >&2
            exit 2
        fi
    fi
fi

if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "kisystem: installing dependencies into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
    # The ray extra too, so the Ray executor's tests run; where Ray has no wheel, they are skipped.
    if ! "$venv/bin/python" -m pip install --quiet -e "$root[test,ray]"; then
        echo "kisystem: Ray did not install here; installing without it (the Ray executor tests are skipped)" >&2
        "$venv/bin/python" -m pip install --quiet -e "$root[test]"
    fi
    echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
