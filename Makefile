# The two front-door commands (see README): `make demo` and `make test`.
# Each installs what it needs into .venv first (scripts/setup.sh).
.PHONY: setup demo test lint bench docs

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/python examples/quickstart.py

test: setup
	.venv/bin/python -m pytest -q -ra

lint: setup
	.venv/bin/ruff check .
