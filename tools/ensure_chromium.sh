#!/bin/sh
# Headless Chromium for the report test (tests/jobs/test_report_chromium.py), from Debian's
# package: installed only when missing, and only where apt-get can (root). CI runs as root on
# Debian; elsewhere install it yourself (`apt-get install chromium`) or the test skips,
# saying why.
set -e
for name in chromium chromium-browser; do
  if command -v "$name" >/dev/null 2>&1; then command -v "$name"; exit 0; fi
done
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "cannot install chromium: needs root and apt-get (Debian/Ubuntu)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends chromium >&2 || {
  apt-get update >&2 && apt-get install -y --no-install-recommends chromium >&2
}
command -v chromium
