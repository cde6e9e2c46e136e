"""Port of Trace's tests/unit_tests/test_bundle.py: Trace runs the whole script twice, with
`trainable=False` and `trainable=True`; each part here is parametrized the same way."""

import functools

import pytest

from tests.compat.helpers import contain, differs
from tracekit import trace
from tracekit.trace import Node, node

global_var = node("This is a global variable")
global_list = [1, 2, 3]

trainable_modes = pytest.mark.parametrize("trainable", [False, True], ids=["plain", "trainable"])


def make_bundle(trainable):
    return functools.partial(trace.bundle, trainable=trainable)


@trainable_modes
def test_globals_and_nonlocals_are_visible(trainable, capsys):
    bundle = make_bundle(trainable)
    nonlocal_var = node("This is a nonlocal variable")

    @bundle()
    def print_test():
        print(global_var.data)
        print(nonlocal_var.data)

    print_test()
    assert "global variable" in capsys.readouterr().out


@trainable_modes
def test_inputs_follow_the_signature(trainable):
    bundle = make_bundle(trainable)
    x = Node(1, name="node_x")
    y = Node(2, name="node_y")
    condition = Node(True)

    @bundle("[cond] This selects x if condition is True, otherwise y.")
    def cond(condition: Node, x: Node, y: Node):
        return x if condition else y

    output = cond(condition, x, y)
    assert output.inputs["x"] is x and output.inputs["y"] is y and output.inputs["condition"] is condition

    @bundle("[fancy.cond] This selects x if condition is True, otherwise y.")
    def fancy_cond(condition: Node, x: Node, y: Node):
        return x if condition else y

    output = fancy_cond(condition, x, y)
    assert output.inputs["x"] is x and output.inputs["y"] is y and output.inputs["condition"] is condition


@differs("node names carry no ':<id>' suffix (a name is a plain identifier, e.g. 'cond_12'); "
         "the operation's name is output.op.name")
def test_output_name_is_the_operation_name():
    x, y, condition = Node(1), Node(2), Node(True)

    @trace.bundle("[fancy.cond] This selects x if condition is True, otherwise y.")
    def fancy_cond(condition, x, y):
        return x if condition else y

    assert fancy_cond(condition, x, y).name.split(":")[0] == "fancy.cond"


def test_operation_name_from_the_description():
    @trace.bundle("[fancy.cond] This selects x if condition is True, otherwise y.")
    def fancy_cond(condition, x, y):
        return x if condition else y

    out = fancy_cond(Node(True), Node(1), Node(2))
    assert out.op.name == "fancy.cond" and out.op.doc.startswith("This selects")


@trainable_modes
def test_function_returning_a_node(trainable):
    bundle = make_bundle(trainable)
    x, y = Node(1, name="node_x"), Node(2, name="node_y")

    @bundle("[add_1] Add input x and input y")
    def foo(x, y):
        return x + y

    z = foo(x, y)
    assert z.data == 3
    if not trainable:
        assert set(z.parents) == {x, y}
    else:
        assert len(z.parents) == 3


@trainable_modes
def test_methods(trainable):
    bundle = make_bundle(trainable)
    x, y = Node(1), Node(2)

    class Foo:
        @bundle("[Foo.add] Add input x and input y")
        def add(self, x, y):
            return x + y

    assert Foo().add(x, y) == 3

    class Bar:
        def __init__(self):
            self.x = 1

        @bundle()
        def modify_x(self):
            self.x = 2

    bar = Bar()
    bar.modify_x()
    assert bar.x == 2


@trainable_modes
def test_composition_with_a_class_decorator(trainable):
    bundle = make_bundle(trainable)

    def for_all_methods(decorator):  # Trace's opto.trace.utils.for_all_methods
        def decorate(cls):
            for name, attr in list(vars(cls).items()):
                if callable(attr) and not name.startswith("__"):
                    setattr(cls, name, decorator(attr))
            return cls
        return decorate

    def wrap(fun):
        def wrapper(*args, **kwargs):
            return fun(*args, **kwargs)
        return wrapper

    @for_all_methods(wrap)
    class Foo:
        @bundle()
        def add(self, x, y):
            return x + y

    assert Foo().add(Node(1), Node(2)) == 3


@trainable_modes
def test_args_and_kwargs(trainable):
    bundle = make_bundle(trainable)

    @bundle()
    def fun(a, args, kwargs, *_args, **_kwargs):
        return a

    x = fun(node(1), node("args"), node("kwargs"), node("_args_1"), node("_args_2"),
            b=node("_kwargs_b"), c=node("_kwargs_c"))
    assert x == 1 and "b" in x.inputs and "c" in x.inputs
    x = fun(node(1), "arg1", "kwargs", node("var_args_1"), node("var_args_2"), b=node("_kwargs_b"),
            c=node("_kwargs_c"))
    assert x == 1
    x = fun(node(1), "arg1", "kwargs", "var_args_1", node("var_args_2"), b=node("_kwargs_b"),
            c=node("_kwargs_c"))
    assert x == 1
    x = fun(node(1), "arg1", "kwargs", "var_args_1")
    assert x == 1


def test_stop_tracing():
    x = node(1)
    y = node(2)
    with trace.stop_tracing():
        z = x + y
    assert z.inputs == {}
    assert z == 3


@trainable_modes
def test_decorator_forms(trainable):
    bundle = make_bundle(trainable)

    @bundle()  # Test bundle with inline comment
    def fun(a, b):  # Test bundle with inline comment
        return a + b

    assert fun(node(1), node(2)) == 3

    def plain(a, b):
        return a + b

    tfun = bundle()(plain)
    assert tfun(node(1), node(2)) == 3
    tfun = bundle()(plain)  # Test inline bundle with comments
    assert tfun(node(1), node(2)) == 3


@trainable_modes
def test_single_output_of_a_tuple(trainable):
    bundle = make_bundle(trainable)

    @bundle()
    def fun(a, b):
        return a + b, a - b

    x_y = fun(node(1), node(2))
    assert isinstance(x_y, Node) and len(x_y) == 2
    assert x_y[0] == 3 and x_y[1] == -1


@differs("bundle(traceable_code=True) raises InvalidOptionError: tracekit records a bundled call "
         "as one operation and has no expandable inner graph (z.info['output'])")
def test_traceable_code():
    @trace.bundle(traceable_code=True)
    def test(a, b):
        """Complex function."""
        return a + b + 10

    x, y = node(1), node(2)
    z = test(x, y)
    assert z == (x + y + 10)
    z0 = z.info["output"]
    assert "add" in z0.name


def test_external_dependencies_are_allowed():
    external_var = node(0)

    @trace.bundle()
    def test(a, b):
        """Complex function."""
        return a + b + 10 + external_var.data

    x, y = node(1), node(2)
    z = test(x, y)  # Trace raises TraceMissingInputsError here; tracekit records the read
    assert z == 13


@differs("a node read inside a bundled call becomes an input of the call (it is recorded "
         "as a parent, not kept aside in z.info['external_dependencies'])")
def test_external_dependencies_are_not_parents():
    external_var = node(0)

    @trace.bundle(allow_external_dependencies=True)
    def test(a, b):
        return a + b + 10 + external_var.data

    x, y = node(1), node(2)
    z = test(x, y)
    assert z == (x + y + 10 + external_var.data)
    assert contain(z.parents, x) and contain(z.parents, y) and not contain(z.parents, external_var)
    assert contain(z.info["external_dependencies"], external_var)


def test_external_dependencies_are_inputs():
    external_var = node(0)

    @trace.bundle(allow_external_dependencies=True)
    def test(a, b):
        return a + b + 10 + external_var.data

    x, y = node(1), node(2)
    z = test(x, y)
    assert z == (x + y + 10 + external_var.data)
    assert contain(z.parents, x) and contain(z.parents, y) and contain(z.parents, external_var)
    assert "a" in z.inputs and "b" in z.inputs


class Bar:
    def __init__(self):
        self.node = node(1)
        self.non_node = 2

    def trace_fun(self, x):
        return self.node * 2

    def non_trace_fun(self):
        return self.non_node * 2


def test_getattr_and_call():
    """Trace first checks that `foo.node` raises AttributeError (it only prints); in tracekit
    attribute access on a node is traced, so that line is left out."""
    foo = node(Bar())
    x = node("x")
    attr = foo.getattr("node")
    assert attr == 1 and contain(attr.parents, foo)
    attr = foo.getattr("non_node")
    assert attr == 2
    fun = foo.getattr("non_trace_fun")
    assert fun() == 4
    fun = foo.getattr("trace_fun")
    assert fun(x) == 2
    y = foo.call("non_trace_fun")
    assert y == 4 and contain(y.parents[0].parents, foo)
    y = foo.call("trace_fun", x)
    assert y == 2 and contain(y.parents, x)


class Foo:
    def __init__(self):
        self.x = node(1)

    def add(self, y):
        return y + 1 + self.x  # node


def test_getattr_and_call_of_a_node_attribute():
    node_f = node(Foo())
    y = node_f.getattr("x")
    assert len(y.parents) == 2
    assert "getattr" in y.name
    assert y == node_f.data.x  # value
    add = node_f.getattr("add")
    z = add(node(2))
    assert len(z.parents) == 2
    assert contain(z.parents, add)
    assert contain(z.parents[0].parents, node_f)
    z2 = node_f.call("add", 2)
    assert z2 == z
    assert contain(z2.parents[0].parents, node_f)
    z2 = node_f.call("add", node(2))
    assert z2 == z
    assert contain(z2.parents[0].parents, node_f)


def test_attribute_access_on_a_node():
    node_f = node(Foo())
    y = node_f.x
    assert len(y.parents) == 2
    z2 = node_f.add(2)
    assert z2 == node_f.call("add", 2)


@trainable_modes
def test_recursion_runs_the_original_function(trainable):
    bundle = make_bundle(trainable)

    @bundle(overwrite_python_recursion=True)
    def recursion(n):
        if n == 0:
            return 0
        val = recursion(n - 1)
        assert not isinstance(val, Node)  # inner calls run untraced
        return n + val

    output = recursion(10)
    assert output == 55
    assert len(output.parents) == (2 if trainable else 1)


@pytest.mark.parametrize("trainable", [False, pytest.param(True, marks=differs(
    "the code of a trainable function called inside another bundled call is an input of the "
    "outer call too (the result depends on it, so its code gets the feedback)"))],
    ids=["plain", "trainable"])
def test_nested_function_visibility(trainable):
    bundle = make_bundle(trainable)

    @bundle()
    def func_a(a):
        "Returns a+1"
        return a + 1

    @bundle()
    def func_b(b):
        "Returns b+1"
        return func_a(b) + 1

    y = func_b(3)
    assert len(y.parents) == (2 if trainable else 1)
    assert y == 5


def test_modifying_nonlocal_and_global_variables():
    global global_var
    nonlocal_x = 5

    @trace.bundle()
    def modify_nonlocal():
        nonlocal nonlocal_x
        nonlocal_x = nonlocal_x + 1

    modify_nonlocal()
    assert nonlocal_x == 6

    @trace.bundle()
    def modify_global():
        global global_var
        global_var = node("Falsenone")

    modify_global()
    assert global_var == "Falsenone"


@trainable_modes
def test_modifying_a_global_list(trainable):
    bundle = make_bundle(trainable)
    old_len = len(global_list)

    @bundle()
    def modify_global_list():
        global_list.append(1)

    modify_global_list()
    assert len(global_list) == old_len + 1
