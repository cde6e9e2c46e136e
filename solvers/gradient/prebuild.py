"""Build the fused CPU optimizer kernels ahead of training: `python -m solvers.gradient.prebuild`.

A training step never compiles (see `_ckernel`): until this has run once on a machine
(`make setup` runs it), SGD / Adam / AdamW / Lion use torch's own kernels. Exit status 0
when the kernels are ready, 1 when they cannot be built (no C compiler, or
`TRACEKIT_NO_CKERNEL=1`).
"""

from __future__ import annotations

import sys

from solvers.gradient import _ckernel


def main() -> int:
    """Compile (if needed) and load the kernels; print where they are."""
    if _ckernel.build() is None:
        print("tracekit optimizer kernels: not built (no C compiler, or TRACEKIT_NO_CKERNEL is set); "
              "torch's kernels will run")
        return 1
    print(f"tracekit optimizer kernels: ready in {_ckernel.cache_dir()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
