#!/usr/bin/env bash
# DetLens developer entry point. Run from anywhere; it works in the repository root.
#
#   bash scripts/dev.sh setup   # .venv + requirements-dev.txt (+ Debian chromium for browser tests, when root)
#   bash scripts/dev.sh run     # setup, then start the dashboard
#   bash scripts/dev.sh test    # setup, then lint, format check and the whole pytest suite (extra args go to pytest)
#   bash scripts/dev.sh lint    # setup, then ruff check and ruff format --check
#
# Idempotent: a second setup is quiet and installs nothing unless a requirements file changed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"
PY="$VENV/bin/python"
STAMP="$VENV/.detlens-requirements.stamp"
CHROMIUM=/usr/bin/chromium

log() { printf '[dev.sh] %s\n' "$*" >&2; }

ensure_venv() {
    if [[ -x "$PY" ]]; then
        return
    fi
    local base="${PYTHON:-python3}"
    if ! "$base" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        log "need Python >= 3.11 as '$base' (set PYTHON=/path/to/python3.11 to choose another)"
        exit 1
    fi
    log "creating $VENV with $("$base" --version 2>&1)"
    rm -rf "$VENV"  # only a broken venv (no bin/python) reaches this line
    "$base" -m venv "$VENV"
    rm -f "$STAMP"
}

ensure_requirements() {
    if [[ -f "$STAMP" && "$STAMP" -nt requirements.txt && "$STAMP" -nt requirements-dev.txt && "$STAMP" -nt pyproject.toml ]]; then
        return
    fi
    log "installing requirements-dev.txt into .venv"
    PIP_NO_INPUT=1 "$PY" -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
    # the `detlens` command (pyproject.toml's console script), on the code of this checkout
    PIP_NO_INPUT=1 "$PY" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
    touch "$STAMP"
}

ensure_chromium() {
    if [[ -x "$CHROMIUM" ]]; then
        return
    fi
    if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "installing Debian chromium for the browser tests"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq </dev/null
        apt-get install -y -qq chromium </dev/null >/dev/null
    else
        log "warning: $CHROMIUM is missing and this is not root with apt-get: browser tests will be skipped" \
            "(and fail under CI=true); install it with: sudo apt-get install -y chromium"
    fi
}

setup() {
    ensure_venv
    ensure_requirements
    ensure_chromium
}

lint() {
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
}

usage() {
    sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
}

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
    setup) setup ;;
    run)
        setup
        exec "$PY" -m dashboard.serve "$@"  # streamlit run dashboard/app.py, the app imported and the newest run open first
        ;;
    test)
        setup
        lint
        exec "$PY" -m pytest "$@"
        ;;
    lint)
        setup
        lint
        ;;
    -h | --help | help)
        usage
        ;;
    *)
        usage
        exit 2
        ;;
esac
