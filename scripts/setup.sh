#!/usr/bin/env bash
# Set up mmv-tf on Debian with Python 3.11: system packages (as root), then .venv with the project.
# Usage: bash scripts/setup.sh [--test]   (--test also installs what the test suite needs)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(python3-venv espeak-ng)
[[ "${1:-}" == "--test" ]] && packages+=(chromium)
if command -v apt-get >/dev/null && [[ $(id -u) -eq 0 ]]; then
    missing=()
    for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    if ((${#missing[@]})); then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
elif ! command -v espeak-ng >/dev/null; then
    echo "note: install espeak-ng (sudo apt-get install espeak-ng) to generate the demo corpus" >&2
fi

python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
[[ -x .venv/bin/python ]] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"
