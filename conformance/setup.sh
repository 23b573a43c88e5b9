#!/usr/bin/env bash
# Create the Python 2.7 environment that runs Autobahn|Testsuite (wstest).
#
#   conformance/setup.sh            # create or update conformance/.venv27
#   PYTHON27=/path/to/python2.7 conformance/setup.sh
#   conformance/setup.sh --force    # rebuild from scratch
#
# Idempotent: when the environment already matches requirements-py27.txt and
# wstest runs, nothing is done.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv27"
reqs="$here/requirements-py27.txt"
stamp="$venv/.ripple-requirements.sha256"
# Last virtualenv release that still runs on Python 2.7.
virtualenv_spec="virtualenv==20.15.1"

force=0
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -h|--help) sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup.sh: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

log() { echo "conformance/setup.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

is_py27() {
    [ -n "$1" ] && [ -x "$1" ] || command -v "$1" >/dev/null 2>&1 || return 1
    "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (2, 7) else 1)' >/dev/null 2>&1
}

find_py27() {
    local cand
    if [ -n "${PYTHON27:-}" ]; then
        is_py27 "$PYTHON27" && echo "$PYTHON27"
        return
    fi
    # A pyenv shim named python2.7 may exist without a 2.7 being selected;
    # is_py27 actually runs the candidate, so such a shim is skipped.
    if command -v python2.7 >/dev/null 2>&1 && is_py27 python2.7; then
        command -v python2.7; return 0
    fi
    for cand in /root/.pyenv/versions/2.7*/bin/python "${PYENV_ROOT:-$HOME/.pyenv}"/versions/2.7*/bin/python; do
        if is_py27 "$cand"; then echo "$cand"; return 0; fi
    done
    return 1
}

req_hash() { sha256sum "$reqs" | cut -d' ' -f1; }

env_ok() {
    [ -x "$venv/bin/python" ] && [ -x "$venv/bin/wstest" ] || return 1
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(req_hash)" ] || return 1
    "$venv/bin/python" -c 'import autobahntestsuite, autobahn, twisted' >/dev/null 2>&1 || return 1
    timeout 60 "$venv/bin/wstest" --help >/dev/null 2>&1
}

[ -f "$reqs" ] || die "missing $reqs"

if [ "$force" -eq 0 ] && env_ok; then
    log "environment at $venv is up to date"
    exit 0
fi

if [ -n "${PYTHON27:-}" ]; then
    py27="$(find_py27)" || die "PYTHON27=$PYTHON27 is not a working Python 2.7 interpreter"
else
    py27="$(find_py27)" || die "no Python 2.7 interpreter found.
  Autobahn|Testsuite needs Python 2.7. Set PYTHON27=/path/to/python2.7, put python2.7
  on PATH, or install one (e.g. 'pyenv install 2.7.18')."
fi
log "using Python 2.7 at $py27"

# Unset variables that would leak a Python 3 setup into the 2.7 processes.
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONWARNINGS="ignore::DeprecationWarning"

if [ "$force" -eq 1 ] && [ -d "$venv" ]; then
    log "removing $venv (--force)"
    rm -rf "$venv"
fi

if ! { [ -x "$venv/bin/python" ] && is_py27 "$venv/bin/python" \
        && "$venv/bin/python" -m pip --version >/dev/null 2>&1; }; then
    rm -rf "$venv"
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/ripple-venv27.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    if ! "$py27" -m pip --version >/dev/null 2>&1; then
        log "bootstrapping pip with ensurepip"
        "$py27" -m ensurepip --user >/dev/null 2>&1 || true
        "$py27" -m pip --version >/dev/null 2>&1 || die "$py27 has no pip (and ensurepip failed)"
    fi
    # Install virtualenv into a throw-away directory so the interpreter itself
    # is left untouched.
    log "installing $virtualenv_spec into a temporary directory"
    "$py27" -m pip install --quiet --target "$tmp/boot" "$virtualenv_spec" \
        || die "could not install $virtualenv_spec for $py27"
    log "creating $venv"
    PYTHONPATH="$tmp/boot" "$py27" -m virtualenv --quiet --no-periodic-update \
        --app-data "$tmp/app-data" "$venv" \
        || die "virtualenv failed to create $venv"
fi

log "installing pinned requirements (one to two minutes the first time)"
"$venv/bin/python" -m pip install --quiet -r "$reqs" \
    || die "pip install -r $reqs failed"

"$venv/bin/python" -c 'import autobahntestsuite, autobahn, twisted' \
    || die "autobahntestsuite does not import in $venv"
timeout 60 "$venv/bin/wstest" --help >/dev/null 2>&1 \
    || die "$venv/bin/wstest does not run"

req_hash > "$stamp"
log "ready: $venv/bin/wstest ($("$venv/bin/python" -c 'import autobahntestsuite as a; print(a.__version__)' 2>/dev/null || echo '?'))"
