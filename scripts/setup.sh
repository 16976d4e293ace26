#!/usr/bin/env bash
# Creates .venv with Python 3.10 (lava-nc 0.10.0 supports nothing newer) and installs
# neuro with its pinned dependencies. Re-running is cheap: it reinstalls only when
# pyproject.toml changed since the last successful install.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python310() {
    local c
    for c in "${PYTHON310:-}" python3.10 "$HOME"/.pyenv/versions/3.10*/bin/python /usr/bin/python3.10 /usr/local/bin/python3.10; do
        [ -n "$c" ] || continue
        if "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; then
            command -v "$c" || echo "$c"
            return 0
        fi
    done
    return 1
}

stamp=.venv/.installed
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && .venv/bin/python -c 'import neuro' >/dev/null 2>&1; then
    exit 0
fi
py=$(find_python310) || {
    echo "setup: Python 3.10 not found (lava-nc 0.10.0 needs it). Install it (e.g. 'pyenv install 3.10') or set PYTHON310=/path/to/python3.10." >&2
    exit 1
}
echo "setup: creating .venv with $py"
[ -x .venv/bin/python ] || "$py" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"
touch "$stamp"
echo "setup: done"
