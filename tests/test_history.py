"""The bounded record: a ring against a plain list, step numbers, and the path."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxgrad_magic.history import History, Ring

# An operation: append one value, extend by a run of consecutive values, or start over.
operations = st.lists(st.tuples(st.sampled_from(["append", "extend", "clear"]), st.integers(0, 12)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(limit=st.integers(1, 7), ops=operations, reads=st.lists(st.booleans(), min_size=40, max_size=40))
def test_a_ring_keeps_the_first_entry_and_the_most_recent_ones(
    limit: int, ops: list[tuple[str, int]], reads: list[bool]
) -> None:
    ring, model = Ring(limit), [-1.0]
    ring.clear(-1.0)
    handed_out: list[tuple[np.ndarray, list[float]]] = []  # every array read, and what it held then
    for (op, size), read in zip(ops, reads, strict=False):
        if op == "append":
            value = float(len(model))
            ring.append(value)
            model.append(value)
        elif op == "extend":
            values = np.arange(len(model), len(model) + size, dtype=np.float64)
            ring.extend(values)
            model.extend(values.tolist())
        else:
            model = [-float(size)]
            ring.clear(model[0])
        want = [model[0], *model[1:][-limit:]]
        assert ring.count == len(want) - 1
        if read:  # reads come and go: a view now, a wrapped copy later
            got = ring.array()
            np.testing.assert_array_equal(got, want)
            assert not got.flags.writeable
            handed_out.append((got, want))
    for got, want in handed_out:  # later writes changed none of them
        np.testing.assert_array_equal(got, want)


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


@settings(max_examples=100, deadline=None)
@given(limit=st.integers(1, 6), sizes=st.lists(st.integers(0, 9), max_size=12))
def test_history_steps_number_what_is_kept(limit: int, sizes: list[int]) -> None:
    h = History(width=None, limit=limit)
    h.start(0.0, [])
    earlier: list[tuple[np.ndarray, list[int]]] = []
    for size in sizes:
        if size == 1:
            h.append(float(h.step + 1), [])
        else:
            h.extend(np.arange(h.step + 1, h.step + 1 + size, dtype=np.float64), None)
        want = [0, *range(max(1, h.step - limit + 1), h.step + 1)]
        np.testing.assert_array_equal(h.steps(), want)
        np.testing.assert_array_equal(h.losses(), want)  # each loss here is its step number
        earlier.append((h.steps(), want))
    for got, want in earlier:
        np.testing.assert_array_equal(got, want)


def test_history_keeps_the_path_beside_the_losses() -> None:
    h = History(width=2, limit=3)
    h.start(5.0, [1.0, 2.0])
    h.append(4.0, [0.9, 1.9])
    h.extend(np.array([3.0, 2.0, 1.0]), np.array([[0.8, 1.8], [0.7, 1.7], [0.6, 1.6]]))
    np.testing.assert_array_equal(h.losses(), [5.0, 3.0, 2.0, 1.0])
    np.testing.assert_array_equal(h.steps(), [0, 2, 3, 4])
    np.testing.assert_array_equal(h.path(), [[1.0, 2.0], [0.8, 1.8], [0.7, 1.7], [0.6, 1.6]])
