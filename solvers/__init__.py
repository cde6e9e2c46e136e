"""Standalone solvers used by tracekit.

Each module works on plain values (tensors, callables, strings) and never imports
tracekit: gradient optimizers, the LLM text optimizer, constrained, convex and bilevel
solvers.
"""
