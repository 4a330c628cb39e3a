# Every target creates .venv when missing; `make setup` is idempotent.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-done

.PHONY: setup test lint demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py src/tether/wire/_native.c src/tether/drivers/netboot/_tftp_pump.c
$(STAMP): scripts/setup.sh scripts/build-initramfs.sh
$(STAMP): scripts/setup-pythons.sh
	bash scripts/setup.sh
	touch $(STAMP)

lint: setup
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy

test: setup lint
	$(BIN)/pytest -q -p no:cacheprovider
	bash scripts/test-pythons.sh

demo: setup
	$(BIN)/python examples/demo.py

bench: setup
	$(BIN)/python -m bench

# kill -9 of clients, exporters and the controller over 1,000 leases (~12 min; not in CI);
# e.g. make soak SOAK_ARGS="--database postgresql"
.PHONY: soak
soak: setup
	nice -n 10 $(BIN)/python -m bench.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache build src/*.egg-info
	rm -rf .venv312 .venv313
	rm -f src/tether/wire/_native*.so src/tether/drivers/netboot/_tftp_pump*.so
