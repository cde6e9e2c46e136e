"""Microsoft Trace's unit tests (microsoft/Trace, tests/unit_tests/) ported to tracekit.trace.

Each file ports the Trace file of the same name: Trace's scripts are split into test
functions, names are translated (`opto.trace` -> `tracekit.trace`, `x._inputs` ->
`x.inputs`, `opto.trace.utils.contain(c, x)` -> `any(n is x for n in c)`), assertions are
kept. Every deliberate difference is `xfail(strict=True)` with the reason.
"""
