#!/usr/bin/env bash
# Debian packages the test suite uses, installed when missing:
#   chromium         headless browser: opens the HTML appendix in the browser test
#   slurm-wlm, munge a one-node SLURM cluster for the cluster test (tests/test_slurm.py starts and stops it)
# Runs apt-get as root, or through sudo.
set -euo pipefail
packages=()
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
command -v slurmctld >/dev/null 2>&1 || packages+=(slurm-wlm)
command -v munged >/dev/null 2>&1 || packages+=(munge)
[ ${#packages[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${packages[@]}"
