# Two commands a newcomer needs: `make demo` and `make test`. Everything else is for developers.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Two installs: the base one (analysis, drills, the server) is all `make demo` and `make serve` need; the
# developer one adds every extra (ansible, postgres) and the tools, for `make test` and `make check`.
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
PIP_INSTALL = $(BIN)/python -m pip install --disable-pip-version-check -e

.PHONY: demo test check lint format bench serve clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing ringfence into $(VENV) (first run only)…"
	@$(PIP_INSTALL) . > $(VENV)/pip.log 2>&1 \
		|| { grep -v "^WARNING: Location" $(VENV)/pip.log; echo "pip install failed (log: $(VENV)/pip.log)"; exit 1; }
	@$(BIN)/python -c "import ringfence" && touch $(STAMP)

# Depends on the base stamp so the venv exists; the developer install is a superset, so it leaves both fresh.
$(DEV_STAMP): pyproject.toml $(STAMP)
	@echo "Installing ringfence with every extra and the developer tools into $(VENV) (first run only)…"
	@$(PIP_INSTALL) '.[dev]' > $(VENV)/pip.log 2>&1 \
		|| { grep -v "^WARNING: Location" $(VENV)/pip.log; echo "pip install failed (log: $(VENV)/pip.log)"; exit 1; }
	@$(BIN)/python -c "import ringfence, ansible_runner, pytest" && touch $(STAMP) $(DEV_STAMP)

demo: $(STAMP)
	@$(BIN)/ringfence demo

test: $(DEV_STAMP)
	$(BIN)/python -m pytest -n 2 -q

check: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: $(DEV_STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

serve: $(STAMP)
	$(BIN)/ringfence serve --sample

bench: $(DEV_STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist
