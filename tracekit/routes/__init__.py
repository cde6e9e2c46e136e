"""Route adapters: one per route of `tk.Optimizer` ("gradient", "zeroth_order", "bayesian",
"bracket", "demos", "text").

Each adapter turns the traced parameters of its route into the plain inputs of a
standalone solver (`solvers.gradient`, `solvers.text`) and the solver's answer into
`tracekit.seam.ParamUpdate`s for the optimizer to validate and apply.
"""
