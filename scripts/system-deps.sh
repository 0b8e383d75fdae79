#!/usr/bin/env bash
# What the test suite needs from the system, beyond .venv/: Debian's chromium and chromium-driver (the report
# and console tests drive the pages headless) and postgresql (a throwaway server for the Iceberg catalog
# test). Installed with apt-get when missing (as root, or through sudo without a password).
set -euo pipefail
if { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } \
    && command -v chromedriver >/dev/null 2>&1 && compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  apt=(apt-get)
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  apt=(sudo apt-get)
else
  echo "chromium or postgresql is missing and cannot be installed here: run" \
       "'apt-get install chromium chromium-driver postgresql' as root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${apt[@]}" update -qq
"${apt[@]}" install -y -qq --no-install-recommends chromium chromium-driver postgresql >/dev/null
