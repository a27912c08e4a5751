#!/usr/bin/env bash
# Idempotent set-up on Debian/Ubuntu: system packages when missing, then .venv with pinned deps.
# Usage: scripts/setup.sh [app|dev]
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-app}"

apt_pkgs=()
command -v pdftoppm >/dev/null || apt_pkgs+=(poppler-utils)
[ -f /usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf ] || apt_pkgs+=(fonts-liberation)
if [ "$mode" = dev ]; then
  command -v chromium >/dev/null || apt_pkgs+=(chromium chromium-driver)
  # the OFL handwriting fonts core/synth.py draws synthetic training pages with
  [ -d /usr/share/fonts/truetype/humor-sans ] && [ -d /usr/share/fonts/opentype/bwht ] || apt_pkgs+=(fonts-humor-sans fonts-comic-neue fonts-dancingscript fonts-kristi fonts-breip fonts-bwht fonts-ecolier-court fonts-kaushanscript)
fi
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_pkgs[@]}" >/dev/null
fi

PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
req=requirements.txt; [ "$mode" = dev ] && req=requirements-dev.txt
stamp=".venv/.installed-$(sha256sum requirements.txt requirements-dev.txt requirements-nodeps.txt requirements-target.txt | sha256sum | cut -c1-16)-$mode"
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -r "$req"
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
  grep -v '^#' requirements-target.txt | while read -r dir requirement; do
    [ -n "$dir" ] || continue
    rm -rf ".venv/$dir"
    .venv/bin/pip install -q --disable-pip-version-check --no-deps --target ".venv/$dir" "$requirement"
  done
  touch "$stamp"
fi
