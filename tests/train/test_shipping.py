"""How state and gradients travel to out-of-process workers (tracekit.training.shipping):
tensors in shared memory for a process pool, the rest pickled, nothing left behind."""

from __future__ import annotations

import os

import torch

from tracekit.training import ProcessExecutor
from tracekit.training.executors import Executor
from tracekit.training.shipping import (
    PickledState,
    RayState,
    SharedMemoryState,
    in_blocks,
    pack_tensor,
    unpack_tensor,
)


class ReadState:
    """A worker's view of the shipped state: what `load()` gives, reduced to plain data."""

    def __init__(self, handle):
        self.handle = handle

    def __call__(self, _item):
        values = self.handle.load()
        return {k: (str(v.dtype), tuple(v.shape), v.double().sum().item()) if torch.is_tensor(v) else v
                for k, v in values.items()}


def expected(state):
    return {k: (str(v.dtype), tuple(v.shape), v.double().sum().item()) if torch.is_tensor(v) else v
            for k, v in state.items()}


def test_a_pool_ships_tensors_in_shared_memory_and_the_rest_pickled():
    state = {"w": torch.arange(6, dtype=torch.float64).reshape(2, 3), "prompt": "be brief",
             "half": torch.ones(4, dtype=torch.bfloat16), "empty": torch.zeros(0), "n": 3}
    with ProcessExecutor(2) as pool:
        handle = pool.share_state(state)
        assert isinstance(handle, SharedMemoryState)
        assert set(handle.blocks) == {"w", "half"}  # non-empty CPU tensors, whatever the dtype
        got = pool.map(ReadState(handle), [0, 1])
        assert [o.value for o in got] == [expected(state)] * 2
        # the next call writes the same blocks in place; a new shape gets a new block
        state2 = dict(state, w=torch.full((2, 3), 2.0, dtype=torch.float64), half=torch.ones(8, dtype=torch.bfloat16))
        handle2 = pool.share_state(state2)
        assert handle2.blocks["w"][0] == handle.blocks["w"][0]
        assert handle2.blocks["half"][0] != handle.blocks["half"][0]
        assert [o.value for o in pool.map(ReadState(handle2), [0, 1])] == [expected(state2)] * 2
        names = [spec[0] for spec in handle2.blocks.values()]
        assert all(os.path.exists(f"/dev/shm/{n}") for n in names)
    assert not any(os.path.exists(f"/dev/shm/{n}") for n in names)  # close() unlinks them


def test_result_blocks_carry_gradients_back():
    with ProcessExecutor(1) as pool:
        blocks = pool.result_blocks({"0:w": (torch.float64, (3,))})
        got = pool.map(WriteGrad(blocks["0:w"]), [0])
        assert got[0].value is True
        assert torch.equal(pool.result_view("0:w"), torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
        # a tensor that does not fit the block is refused (it then travels in the result)
        assert pool.map(WriteGrad(blocks["0:w"], torch.float32), [0])[0].value is False


class WriteGrad:
    def __init__(self, spec, dtype=torch.float64):
        self.spec, self.dtype = spec, dtype

    def __call__(self, _item):
        from tracekit.training.shipping import write_result

        return write_result(self.spec, torch.tensor([1.0, 2.0, 3.0], dtype=self.dtype))


def test_the_default_state_is_one_pickled_blob():
    state = {"w": torch.ones(3), "prompt": "x"}
    handle = Executor().share_state(state)
    assert isinstance(handle, PickledState)
    assert expected(handle.load()) == expected(state)


def test_ray_packs_tensors_as_numpy_and_back():
    packed = RayState.pack({"w": torch.ones(3, dtype=torch.float64), "b": torch.ones(2, dtype=torch.bfloat16),
                            "s": "text"})
    assert packed["w"][0] == "numpy" and packed["b"][0] == "value" and packed["s"] == ("value", "text")
    g = torch.arange(4.0)
    arr = pack_tensor(g, True)
    assert type(arr).__module__ == "numpy" and torch.equal(unpack_tensor(arr), g)
    assert pack_tensor(g, False) is g and unpack_tensor(g) is g
    assert not in_blocks(torch.zeros(0)) and not in_blocks(3.0)


def test_pool_workers_get_their_share_of_torch_threads():
    with ProcessExecutor(2) as pool:
        threads = [o.value for o in pool.map(_threads, [0, 1])]
    assert threads == [max(1, (os.cpu_count() or 1) // 2)] * 2


def _threads(_item):
    return torch.get_num_threads()
