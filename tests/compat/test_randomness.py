"""Port of Trace's tests/unit_tests/test_randomness.py: a bundled (trainable) function does
not disturb the global random state."""

import random

from tracekit import trace


def test_random_state_is_left_alone():
    def test():
        return random.random()

    random.seed(0)
    x1 = test()
    random.seed(0)
    x2 = test()
    assert x1 == x2

    @trace.bundle(trainable=True)
    def traced():
        return random.random()

    random.seed(0)
    y1 = traced()
    random.seed(0)
    y2 = traced()
    assert y1 == y2
