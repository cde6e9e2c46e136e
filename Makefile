# The two front-door commands (see README): `make demo` and `make test`.
# Each installs what it needs into .venv first (scripts/setup.sh).
.PHONY: setup demo test lint bench docs

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/python examples/quickstart.py
	.venv/bin/python examples/prompt_program.py --quick

# The setup installs the embedded model, so its tests must run, never skip.
# The import contracts (pyproject's [tool.importlinter]) are checked first, then the types
# (mypy, pyproject's [tool.mypy]; examples/ as a user's code; cold about a minute, cached
# in .mypy_cache after that).
test: setup
	.venv/bin/lint-imports --no-cache
	.venv/bin/mypy tracekit solvers examples
	TRACEKIT_REQUIRE_REAL_LLM=1 .venv/bin/python -m pytest -q -ra

docs: setup
	.venv/bin/mkdocs build --strict

lint: setup
	.venv/bin/ruff check .
