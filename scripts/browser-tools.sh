#!/usr/bin/env bash
# Install headless Chromium and its WebDriver from Debian for the real-browser dashboard test
# (tests/web/test_browser.py) when we can.  --no-install-recommends: the recommends would pull in
# avahi, samba, printer tools and a systemd upgrade; about 26 packages and 123 MB to download on a
# bare Debian 12, some 40 s to install.  A failure here only warns: the test then fails with the
# reason (or skips, with KISYSTEM_NO_BROWSER=1).
if { ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; } && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "kisystem: installing chromium and chromium-driver for the browser test" >&2
    { apt-get install -y -qq --no-install-recommends chromium chromium-driver \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver; }; } >/dev/null 2>&1 \
        || echo "kisystem: could not install chromium; the browser test will fail (KISYSTEM_NO_BROWSER=1 skips it)" >&2
fi
