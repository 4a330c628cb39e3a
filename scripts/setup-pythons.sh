#!/usr/bin/env bash
# Makes .venv312 and .venv313: the other supported Pythons, on which `make test` runs the driver,
# test-kit and wire tests (scripts/test-pythons.sh). The interpreter comes from PATH
# (python3.12) or pyenv (~/.pyenv/versions/3.12.*). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
for version in 3.12 3.13; do
    venv=".venv${version/./}"
    if [ ! -x "$venv/bin/python" ]; then
        # A pyenv shim on PATH may exist and still refuse to run (not the active version), so
        # every candidate is tried.
        python=""
        for candidate in $(ls -d "$HOME"/.pyenv/versions/"$version".*/bin/python 2>/dev/null) \
            $(command -v "python$version" || true); do
            if "$candidate" -c "pass" 2>/dev/null; then python=$candidate; break; fi
        done
        if [ -z "$python" ]; then
            echo "setup: no Python $version (python$version or pyenv); install it to run the tests on it" >&2
            exit 1
        fi
        "$python" -m venv "$venv"
    fi
    # The runtime dependencies and the test runner only: these venvs run a part of the suite.
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -e . pytest pytest-timeout hypothesis
done
