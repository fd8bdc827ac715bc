#!/usr/bin/env bash
# Runs test_cancel_kills_the_whole_tree (all three sandbox levels) N times in a row while
# four busy loops load the machine; prints how many runs passed.  Usage: scripts/stress_cancel.sh [N]
set -uo pipefail
cd "$(dirname "$0")/.."
source .venv/bin/activate
runs=${1:-50}
load=()
for _ in 1 2; do yes > /dev/null & load+=($!); python -c "while True: pass" & load+=($!); done
trap 'kill "${load[@]}" 2>/dev/null' EXIT
sleep 2
passed=0
for _ in $(seq "$runs"); do
    python -m pytest -q -p no:cacheprovider tests/sandbox/test_process.py -k test_cancel_kills_the_whole_tree \
        > /dev/null 2>&1 && passed=$((passed + 1))
done
echo "passed $passed of $runs runs; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
