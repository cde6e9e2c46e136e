"""Plain data crosses the boundary unchanged; anything else, and any malformed frame, is
refused with a typed error (the parent never runs what the worker sends)."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tracekit.sandbox import wire

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary()
plain = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=4),
    max_leaves=20)


def roundtrip(value, arena=None):
    parts = wire.encode_parts({"op": "x"}, {"v": value}, arena)
    frame = b"".join(bytes(p) for p in parts)
    json_len, _ = struct.unpack("<II", frame[:8])
    message, values = wire.decode(bytearray(frame[8:]), json_len, arena)
    assert message == {"op": "x"}
    return values["v"]


@given(plain)
def test_plain_values_cross_unchanged(value):
    assert roundtrip(value) == value


@given(hnp.arrays(st.sampled_from([np.float64, np.float32, np.int64, np.int8, np.uint8, np.bool_]),
                  hnp.array_shapes(min_dims=0, max_dims=3, max_side=5)))
def test_arrays_cross_unchanged(array):
    back = roundtrip(array)
    assert back.dtype == array.dtype and back.shape == array.shape
    assert np.array_equal(back, array, equal_nan=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.int64, torch.bool])
def test_tensors_cross_through_the_arena_and_the_pipe(dtype):
    arena = wire.Arena.create(1 << 22)
    small, big = torch.arange(6).reshape(2, 3).to(dtype), torch.ones(300_000).to(dtype)
    for tensor in (small, big):
        for where in (arena, None):
            back = roundtrip({"t": tensor, "n": np.float32(2.5)}, where)
            assert back["t"].dtype == dtype and torch.equal(back["t"], tensor)
            assert back["n"] == np.float32(2.5)
    arena.close()


def test_values_that_are_not_plain_data_are_named():
    with pytest.raises(wire.NotPlainData, match=r"v\[1\] is a builtins.object"):
        roundtrip([1, object()])
    with pytest.raises(wire.NotPlainData, match="autograd.*sandbox=False"):
        roundtrip(torch.ones(2, requires_grad=True) * 2)
    with pytest.raises(wire.NotPlainData, match="dtype object"):
        roundtrip(np.array([object()], dtype=object))
    with pytest.raises(wire.NotPlainData, match="nested more than"):
        deep: list = []
        for _ in range(100):
            deep = [deep]
        roundtrip(deep)


def frame_of(body: dict, blob: bytes = b"") -> tuple[bytearray, int]:
    text = json.dumps(body).encode()
    return bytearray(text + blob), len(text)


@pytest.mark.parametrize("body, blob, match", [
    ({"v": {"x": {"T": 0, "sh": [2], "dt": "float32"}}, "arrays": [[0, 0, 8]]}, b"\0" * 4, "outside the frame"),
    ({"v": {"x": {"T": 0, "sh": [3], "dt": "float32"}}, "arrays": [[0, 0, 8]]}, b"\0" * 8, "shape needs"),
    ({"v": {"x": {"a": 0, "sh": [1], "dt": "object"}}, "arrays": [[0, 0, 8]]}, b"\0" * 8, "dtype"),
    ({"v": {"x": {"a": 5, "sh": [1], "dt": "int64"}}, "arrays": [[0, 0, 8]]}, b"\0" * 8, "does not carry"),
    ({"v": {"x": {"a": 0, "sh": [1], "dt": "int64"}}, "arrays": [[1, 0, 8]]}, b"", "arena"),
    ({"v": {"x": {"a": 0, "sh": [-1], "dt": "int64"}}, "arrays": [[0, 0, 8]]}, b"\0" * 8, "shape"),
    ({"v": {"x": {"pickle": "gASV"}}}, b"", "unknown item"),
    ({"v": {"x": {"d": [[1]]}}}, b"", "key-value"),
    ({"v": {"x": {"d": [[[1], 2]]}}}, b"", "cannot be rebuilt"),
    ({"v": {"x": {"b": "***"}}}, b"", "cannot be rebuilt"),
    ({"v": [1]}, b"", "not an object"),
])
def test_malformed_frames_are_refused(body, blob, match):
    frame, json_len = frame_of(body, blob)
    with pytest.raises(wire.WireError, match=match):
        wire.decode(frame, json_len)


def test_json_that_does_not_parse_is_refused():
    with pytest.raises(wire.WireError, match="does not parse"):
        wire.decode(bytearray(b"{not json"), 9)
    with pytest.raises(wire.WireError, match="not an object"):
        wire.decode(bytearray(b"[1]"), 3)
