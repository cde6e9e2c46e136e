"""`python -m tracekit`: the same as the `tracekit` command (see tracekit/cli.py)."""

from tracekit.cli import main

raise SystemExit(main())
