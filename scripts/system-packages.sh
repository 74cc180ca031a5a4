#!/usr/bin/env bash
# Debian packages the test suite uses, installed when missing: chromium (headless, opens the HTML appendix
# in the browser test). Runs apt-get as root, or through sudo.
set -euo pipefail
packages=()
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
[ ${#packages[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${packages[@]}"
