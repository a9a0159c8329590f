# Two commands on a fresh machine: `make demo` and `make test`. Each sets up what it needs first.
VENV ?= .venv
PY := $(VENV)/bin/python
GL = $$(cat $(VENV)/mujoco_gl 2>/dev/null || echo egl)

.PHONY: setup setup-dev demo test lint experts

setup:
	bash scripts/setup.sh

setup-dev:
	bash scripts/setup.sh --dev

demo: setup
	MUJOCO_GL=$(GL) $(VENV)/bin/jepa-mpc demo

test: setup-dev
	MUJOCO_GL=$(GL) $(PY) -m pytest -q tests

lint: setup-dev
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

experts: setup
	MUJOCO_GL=$(GL) $(VENV)/bin/jepa-mpc experts episodes=100
