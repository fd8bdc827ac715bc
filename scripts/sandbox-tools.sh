#!/usr/bin/env bash
# Install bubblewrap (the sandbox's network cut) when we can; kisystem falls back to
# `unshare -n` without it, so a failure here only warns.  util-linux provides setpriv
# (a run drops to its own uid with it) and unshare.
if { ! command -v bwrap >/dev/null || ! command -v setpriv >/dev/null; } && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "kisystem: installing bubblewrap for the sandbox" >&2
    { apt-get install -y -qq bubblewrap util-linux || { apt-get update -qq && apt-get install -y -qq bubblewrap util-linux; }; } >/dev/null 2>&1 \
        || echo "kisystem: could not install bubblewrap; the sandbox will use unshare" >&2
fi
