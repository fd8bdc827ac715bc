#!/usr/bin/env bash
# Install bubblewrap (the sandbox's network cut) when we can; kisystem falls back to
# `unshare -n` without it, so a failure here only warns.
if ! command -v bwrap >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "kisystem: installing bubblewrap for the sandbox" >&2
    { apt-get install -y -qq bubblewrap || { apt-get update -qq && apt-get install -y -qq bubblewrap; }; } >/dev/null 2>&1 \
        || echo "kisystem: could not install bubblewrap; the sandbox will use unshare" >&2
fi
