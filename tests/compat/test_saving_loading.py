"""Port of Trace's tests/unit_tests/test_saving_loading.py."""

from tracekit import trace


def make_fun():
    @trace.bundle(trainable=True)
    def fun(x):
        """Some docstring."""
        return len(x), x.count("\n")

    return fun


def test_edit_the_code_parameter():
    fun = make_fun()
    x = "hello\nworld\n"
    a, b = fun(x)
    assert (a, b) == (12, 2)
    code = fun.parameters()[0]
    code.data = code.data.replace("len(x)", '"Hello"')
    a, b = fun(x)
    assert (a, b) == ("Hello", 2)


def test_save_and_load_a_function(tmp_path):
    fun = make_fun()
    x = "hello\nworld\n"
    code = fun.parameters()[0]
    code.data = code.data.replace("len(x)", '"Hello"')
    fun.save(tmp_path / "fun.pkl")  # a JSON manifest, whatever the suffix
    code.data = code.data.replace('"Hello"', "len(x)")
    assert fun(x)[0] == 12
    fun.load(tmp_path / "fun.pkl")
    a, b = fun(x)
    assert (a, b) == ("Hello", 2)


def test_save_and_load_through_a_model(tmp_path):
    @trace.model
    class Holder:
        def __init__(self):
            self.fun = make_fun()

    held = Holder()
    code = held.fun.parameters()[0]
    code.data = code.data.replace("len(x)", '"Hello"')
    held.save(tmp_path / "fun.json")
    other = Holder()
    other.load(tmp_path / "fun.json")
    assert other.fun("a\n")[0] == "Hello"
