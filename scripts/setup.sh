#!/usr/bin/env bash
# Idempotent set-up on Debian/Ubuntu: system packages when missing, then .venv with the pinned
# dependencies and Inkscribe itself (editable), so `.venv/bin/inkscribe` works from any folder.
# Usage: scripts/setup.sh [app|dev]
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-app}"
NEED_GB=8  # the venv is ~6.5 GB (torch's wheels), plus pip's download cache while installing

apt_install() {
  [ $# -gt 0 ] || return 0
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "setup: please install as root: apt-get install $*" >&2; exit 1; }
    sudo="sudo"
  fi
  echo "setup: installing system packages: $*" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

pick_python() {
  local py
  for py in "${PYTHON:-}" python3.11 python3; do
    [ -n "$py" ] && command -v "$py" >/dev/null && { echo "$py"; return; }
  done
}

make_venv() {
  # Debian/Ubuntu ship `venv` (ensurepip) in a separate package: install it when the first try fails.
  local py="$1"
  "$py" -m venv .venv 2>/dev/null && return
  rm -rf .venv
  apt_install "python3-venv" "$(basename "$py")-venv"
  "$py" -m venv .venv
}

check_disk() {
  local free_gb
  free_gb=$(( $(df -Pk . | awk 'NR==2 {print $4}') / 1024 / 1024 ))
  echo "setup: the first install downloads torch and friends: about $NEED_GB GB of disk ($free_gb GB free here)" >&2
  if [ "$free_gb" -lt "$NEED_GB" ] && [ -z "${INKSCRIBE_SKIP_DISK_CHECK:-}" ]; then
    echo "setup: not enough free disk space; free some, or set INKSCRIBE_SKIP_DISK_CHECK=1 to try anyway" >&2
    exit 1
  fi
}

apt_pkgs=()
command -v pdftoppm >/dev/null || apt_pkgs+=(poppler-utils)
[ -f /usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf ] || apt_pkgs+=(fonts-liberation)
PY="$(pick_python)"
[ -n "$PY" ] || { apt_pkgs+=(python3 python3-venv); }
if [ "$mode" = dev ]; then
  command -v chromium >/dev/null || apt_pkgs+=(chromium chromium-driver)
  # the OFL handwriting fonts core/synth.py draws synthetic training pages with
  [ -d /usr/share/fonts/truetype/humor-sans ] && [ -d /usr/share/fonts/opentype/bwht ] || apt_pkgs+=(fonts-humor-sans fonts-comic-neue fonts-dancingscript fonts-kristi fonts-breip fonts-bwht fonts-ecolier-court fonts-kaushanscript)
fi
apt_install "${apt_pkgs[@]}"
PY="${PY:-$(pick_python)}"

stamp=".venv/.installed-$(cat requirements.txt requirements-dev.txt requirements-nodeps.txt requirements-target.txt pyproject.toml | sha256sum | cut -c1-16)-$mode"
[ -f "$stamp" ] && exit 0
[ -x .venv/bin/python ] || { check_disk; make_venv "$PY"; }
req=requirements.txt; [ "$mode" = dev ] && req=requirements-dev.txt
pip=(.venv/bin/pip install -q --disable-pip-version-check)
"${pip[@]}" -r "$req"
"${pip[@]}" --no-deps -r requirements-nodeps.txt
grep -v '^#' requirements-target.txt | while read -r dir requirement; do
  [ -n "$dir" ] || continue
  rm -rf ".venv/$dir"
  "${pip[@]}" --no-deps --target ".venv/$dir" "$requirement"
done
"${pip[@]}" --no-deps -e .  # the `inkscribe` command; its dependencies are the pins above
touch "$stamp"
