from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payouts.split import split_exact


def test_floor_then_largest_fractional_part() -> None:
    # quotas: 100 * 1/3 = 33.33.., 100 * 1/6 = 16.66.., 100 * 1/2 = 50
    assert split_exact(100, [("a", Fraction(1, 3)), ("b", Fraction(1, 6)),
                             ("c", Fraction(1, 2))]) == {"a": 33, "b": 17, "c": 50}


def test_ties_go_to_the_lowest_id() -> None:
    # three equal quotas of 3.33..: one satoshi left, to "a" (ascending id), whatever the order
    assert split_exact(10, [("c", 1), ("a", 1), ("b", 1)]) == {"a": 4, "b": 3, "c": 3}
    assert split_exact(11, [("c", 1), ("b", 1), ("a", 1)]) == {"a": 4, "b": 4, "c": 3}


def test_zero_weight_gets_zero_and_zero_amount_is_fine() -> None:
    assert split_exact(5, [("a", 0), ("b", 2)]) == {"a": 0, "b": 5}
    assert split_exact(0, [("a", 1), ("b", 0)]) == {"a": 0, "b": 0}
    assert split_exact(0, []) == {}


@pytest.mark.parametrize(("amount", "weights", "message"), [
    (5, [], "total weight of zero"),
    (5, [("a", 0)], "total weight of zero"),
    (5, [("a", -1), ("b", 2)], "weight of 'a' must be >= 0"),
    (5, [("a", 1), ("a", 2)], "'a' appears twice"),
    (-1, [("a", 1)], "amount: must be >= 0"),
])
def test_bad_input_names_the_problem(amount, weights, message) -> None:
    with pytest.raises(ValueError, match=message):
        split_exact(amount, weights)


@pytest.mark.parametrize("bad", [1.5, True, "3"])
def test_floats_bools_and_strings_are_refused(bad) -> None:
    with pytest.raises(TypeError):
        split_exact(bad, [("a", 1)])
    with pytest.raises(TypeError):
        split_exact(10, [("a", bad)])


weights = st.lists(
    st.tuples(st.text(alphabet="abcdefgh0123", min_size=1, max_size=4),
              st.fractions(min_value=0, max_value=10**6, max_denominator=10**9)),
    min_size=1, max_size=40, unique_by=lambda p: p[0],
).filter(lambda ws: sum(w for _, w in ws) > 0)


@given(st.integers(min_value=0, max_value=21_000_000 * 10**8), weights)
def test_sum_is_exact_and_each_part_is_within_one_sat_of_its_quota(amount, ws) -> None:
    parts = split_exact(amount, ws)
    assert sum(parts.values()) == amount
    total = sum(w for _, w in ws)
    for pid, w in ws:
        quota = amount * w / total
        assert math.floor(quota) <= parts[pid] <= math.floor(quota) + 1
        if w == 0:
            assert parts[pid] == 0
    # deterministic whatever the input order
    assert split_exact(amount, list(reversed(ws))) == parts


@given(st.integers(min_value=0, max_value=10**12), weights)
def test_remainder_goes_by_largest_fractional_part_then_id(amount, ws) -> None:
    parts = split_exact(amount, ws)
    total = sum(w for _, w in ws)
    fractional = {pid: amount * w / total - math.floor(amount * w / total) for pid, w in ws}
    bumped = {pid for pid, w in ws if parts[pid] > math.floor(amount * w / total)}
    for winner in bumped:
        for loser in set(fractional) - bumped:
            assert fractional[winner] > fractional[loser] or (
                fractional[winner] == fractional[loser] and winner < loser)
