#!/usr/bin/env bash
# Makes sure Debian's headless Chromium is installed for the console's browser tests
# (services/cmd/touchstream/console_test.go drives it through chromedp).
#   - /usr/bin/chromium present: nothing to do.
#   - otherwise on Debian: installs the chromium package with apt-get.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-chromium: no chromium found and no apt-get to install it; install Chromium (the console tests need /usr/bin/chromium)" >&2
  exit 1
fi
sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
echo "ensure-chromium: installing Debian's chromium with apt-get"
if ! sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; then
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
command -v chromium >/dev/null
