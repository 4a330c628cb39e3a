#!/usr/bin/env bash
# The driver, test-kit and wire tests on the other supported Pythons (3.12, 3.13); the whole
# suite runs on 3.11 (`make test`). Each run adds about 15 s on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
for venv in .venv312 .venv313; do
    echo "== $("$venv/bin/python" --version): tests/driver tests/testing tests/wire tests/exporter/test_config.py"
    "$venv/bin/pytest" -q -p no:cacheprovider tests/driver tests/testing tests/wire tests/exporter/test_config.py
done
