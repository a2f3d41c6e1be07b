# Two commands a newcomer needs: `make demo` and `make test`. Everything else is for developers.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check lint format bench serve clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing ringfence and its tools into $(VENV) (first run only)…"
	@$(BIN)/python -m pip install --disable-pip-version-check -e '.[dev]' > $(VENV)/pip.log 2>&1 \
		|| { grep -v "^WARNING: Location" $(VENV)/pip.log; echo "pip install failed (log: $(VENV)/pip.log)"; exit 1; }
	@$(BIN)/python -c "import ringfence" && touch $(STAMP)

demo: $(STAMP)
	@$(BIN)/ringfence demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

check: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

serve: $(STAMP)
	$(BIN)/ringfence serve --sample

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist
