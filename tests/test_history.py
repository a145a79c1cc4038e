"""The bounded record: a ring against a plain list, step numbers, and the path."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxgrad_magic.history import History, Ring

# An operation: append one value, or extend by a run of consecutive values.
operations = st.lists(st.tuples(st.sampled_from(["append", "extend"]), st.integers(0, 12)), max_size=40)


@settings(max_examples=200, deadline=None)
@given(limit=st.integers(1, 7), ops=operations)
def test_a_ring_keeps_the_first_entry_and_the_most_recent_ones(limit: int, ops: list[tuple[str, int]]) -> None:
    ring, model = Ring(limit), [-1.0]
    ring.clear(-1.0)
    for op, size in ops:
        if op == "append":
            value = float(len(model))
            ring.append(value)
            model.append(value)
        else:
            values = np.arange(len(model), len(model) + size, dtype=np.float64)
            ring.extend(values)
            model.extend(values.tolist())
        np.testing.assert_array_equal(ring.array(), [model[0], *model[1:][-limit:]])
        assert ring.count == min(len(model) - 1, limit)


def test_a_ring_of_rows() -> None:
    ring = Ring(3, width=2)
    ring.clear([0.0, 0.5])
    ring.extend(np.array([[1.0, 1.5], [2.0, 2.5]]))
    ring.append([3.0, 3.5])
    ring.append(np.array([4.0, 4.5]))
    np.testing.assert_array_equal(ring.array(), [[0.0, 0.5], [2.0, 2.5], [3.0, 3.5], [4.0, 4.5]])
    assert ring.array().dtype == np.float64


def test_history_numbers_the_steps_it_keeps() -> None:
    h = History(width=None, limit=4)
    h.start(10.0, [])
    assert h.step == 0 and list(h.losses()) == [10.0] and list(h.steps()) == [0] and h.path() is None
    for loss in (9.0, 8.0, 7.0):
        h.append(loss, [])
    h.extend(np.array([6.0, 5.0, 4.0]), None)
    assert h.step == 6
    np.testing.assert_array_equal(h.losses(), [10.0, 7.0, 6.0, 5.0, 4.0])
    np.testing.assert_array_equal(h.steps(), [0, 3, 4, 5, 6])
    assert h.steps().dtype == np.int64
    h.start(1.0, [])
    assert h.step == 0 and list(h.losses()) == [1.0] and list(h.steps()) == [0]


def test_history_keeps_the_path_beside_the_losses() -> None:
    h = History(width=2, limit=3)
    h.start(5.0, [1.0, 2.0])
    h.append(4.0, [0.9, 1.9])
    h.extend(np.array([3.0, 2.0, 1.0]), np.array([[0.8, 1.8], [0.7, 1.7], [0.6, 1.6]]))
    np.testing.assert_array_equal(h.losses(), [5.0, 3.0, 2.0, 1.0])
    np.testing.assert_array_equal(h.steps(), [0, 2, 3, 4])
    np.testing.assert_array_equal(h.path(), [[1.0, 2.0], [0.8, 1.8], [0.7, 1.7], [0.6, 1.6]])
