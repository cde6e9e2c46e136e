"""Port of Trace's tests/unit_tests/test_modules.py."""

from tracekit.trace import Module, bundle, model, node


class BaseModule(Module):
    def __init__(self):
        super().__init__()
        self._param = node(1, trainable=True)

    @bundle(trainable=True)
    def method1(self, x):
        return x

    def method2(self, y):
        return y

    def forward(self, i):
        return self.method1(i)


def dummy_method():
    return 1


class ChildModule(BaseModule):
    def __init__(self):
        super().__init__()
        self._extra_param = node(1, trainable=True)
        self._extra_method = bundle(trainable=True)(dummy_method)
        self._base = BaseModule()

    @bundle(trainable=True)
    def method1(self, x):
        return x

    def method2(self, y):
        return y


@model
class BaseClass:
    def __init__(self):
        super().__init__()
        self._param = node(1, trainable=True)

    @bundle(trainable=True)
    def method1(self, x):
        return x

    def method2(self, y):
        return y

    def forward(self, i):
        return self.method1(i)


class ChildClass(BaseClass):
    def __init__(self):
        super().__init__()
        self._extra_param = node(1, trainable=True)
        self._extra_method = bundle(trainable=True)(dummy_method)
        self._base = BaseClass()

    @bundle(trainable=True)
    def method1(self, x):
        return x

    def method2(self, y):
        return y


def test_module_as_a_class():
    base = BaseModule()
    assert len(base.parameters()) == 2
    assert len(base.parameters_dict()) == 2


def test_module_inheritance():
    child = ChildModule()
    assert len(child.parameters()) == 6
    assert len(child.parameters_dict()) == 5


def test_model_decorator():
    base = BaseClass()
    assert len(base.parameters()) == 2
    assert len(base.parameters_dict()) == 2


def test_model_decorator_inheritance():
    child = ChildClass()
    assert len(child.parameters()) == 6
    assert len(child.parameters_dict()) == 5


def test_save_and_load(tmp_path):
    child = ChildClass()
    child._extra_param._data = 2  # simulate data changes
    child._extra_method.parameter._data = "def dummy_method():\n    return 2"
    child._base._param._data = 3
    child._new_param = node(1, trainable=True)  # a new parameter
    assert len(child.parameters()) == 7
    child.save(tmp_path / "test.pkl")  # Trace cannot save @model classes; tracekit can
    child._base = BaseModule()
    child._base._param._data = 3
    child.save(tmp_path / "test.pkl")

    child2 = ChildClass()
    child2._new_param = node(1, trainable=True)
    child2._base = BaseModule()
    child2.load(tmp_path / "test.pkl")
    assert child2._extra_param == 2
    assert child2._extra_method.parameter.data == "def dummy_method():\n    return 2"
    assert child2._base._param.data == 3
    assert child2._new_param == 1


def test_multiple_inheritance():
    class NonModuleBaseClass:
        def __init__(self):
            pass

        @bundle()
        def method1(self):
            return 1

    @model
    class ChildClass(NonModuleBaseClass):
        def __init__(self):
            super().__init__()

        @bundle(trainable=True)
        def method2(self, x):
            return self.method1() + x

        def forward(self, i):
            return self.method2(i)

    child = ChildClass()
    result = child.forward(1)
    assert result.data == 2
