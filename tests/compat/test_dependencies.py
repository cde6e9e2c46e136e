"""Port of Trace's tests/unit_tests/test_dependencies.py: which parameters an output depends
on. `output.parameter_dependencies` is computed on demand (the same set as
`tk.subgraph(output).parameters`); the nested part of the Trace file needs `traceable_code=True` (not supported)."""

import tracekit as tk
from tests.compat.helpers import contain, differs
from tracekit.trace import bundle, node


def test_parameter_dependencies_attribute():
    x = node(1.0, trainable=True)
    z = x ** node(2.0) + (x * x * x * x) + 0.5
    assert len(z.parameter_dependencies) == 1
    assert contain(z.parameter_dependencies, x)


def test_flat_dependencies():
    x = node(1.0, trainable=True)
    y = node(2.0)
    z = x**y + (x * x * x * x) + 0.5
    deps = tk.subgraph(z).parameters
    assert len(deps) == 1
    assert contain(deps, x)
    assert not contain(deps, y)


@differs("bundle(traceable_code=True) is not supported: tracekit has no expandable inner graph "
         "(expandable_dependencies, sum_feedback(...).expand)")
def test_nested_expandable_dependencies():
    hidden_param = node(-15.0, trainable=True)

    @bundle()
    def inner_function(x):
        return x**2

    @bundle(traceable_code=True)
    def outer_function(x):
        return inner_function(x) + 1 + hidden_param

    output = outer_function(node(1.0, trainable=True))
    assert len(output.expandable_dependencies) == 1


def test_parameter_read_inside_a_bundle_is_a_dependency():
    x = node(1.0)
    hidden_param = node(-15.0, trainable=True)

    @bundle()
    def inner_function(x):
        return x**2

    @bundle()
    def outer_function(x):
        return inner_function(x) + 1 + hidden_param.data

    output = outer_function(x)
    assert output == -13.0
    assert contain(tk.subgraph(output).parameters, hidden_param)
    tk.backward(output, "feedback")
    assert hidden_param.feedback
