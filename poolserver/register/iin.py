"""Kazakh IIN (individuals) / BIN (legal entities) numbers: 12 digits, the last a check digit.

The check digit (regulation notes, requirement 1): ``s = sum(d_i * i for i in 1..11) mod 11``;
if ``s == 10`` use the weights 3,4,5,6,7,8,9,10,11,1,2 instead; if that is 10 again the number is
never issued. Known blind spot (proved exhaustively in tests/test_register_rules.py): in the
first pass the 11th digit has weight 11 = 0 mod 11, so changing only the 11th digit of a number
whose first sum is not 10 leaves the check digit valid. Every other single-digit change is
caught unless it moves the first sum onto or off 10 (the second pass then decides and can
coincide with the check digit).
"""

from __future__ import annotations

import enum

from poolserver.register.errors import RegisterError

WEIGHTS_1 = tuple(range(1, 12))
WEIGHTS_2 = (3, 4, 5, 6, 7, 8, 9, 10, 11, 1, 2)


class IdKind(enum.StrEnum):
    IIN = "IIN"  # individual (an individual entrepreneur mines under the IIN)
    BIN = "BIN"  # legal entity


def _weighted(digits: list[int], weights: tuple[int, ...]) -> int:
    return sum(d * w for d, w in zip(digits, weights, strict=True)) % 11


def first_sum(number: str) -> int:
    """The first-pass weighted sum mod 11 of the first 11 digits (exposed for the tests)."""
    return _weighted([int(c) for c in number[:11]], WEIGHTS_1)


def check_digit(first11: str) -> int | None:
    """The check digit for 11 digits, or None when the number can never be issued."""
    if len(first11) != 11 or not first11.isascii() or not first11.isdigit():
        raise RegisterError("iin_bin", "need exactly 11 digits to compute a check digit")
    digits = [int(c) for c in first11]
    s = _weighted(digits, WEIGHTS_1)
    if s == 10:
        s = _weighted(digits, WEIGHTS_2)
        if s == 10:
            return None
    return s


def kind_of(number: str) -> IdKind:
    """BINs carry the entity type (4, 5 or 6) in the 5th digit; in an IIN it is a day's tens."""
    return IdKind.BIN if number[4] in "456" else IdKind.IIN


def validate_iin_bin(value: str, field: str = "iin_bin") -> str:
    """The number, stripped, if it is 12 digits with a correct check digit; else RegisterError."""
    number = value.strip()
    if len(number) != 12:
        raise RegisterError(field, f"must be 12 digits, got {len(number)} characters")
    if not number.isascii() or not number.isdigit():
        raise RegisterError(field, "must contain only the digits 0-9")
    expected = check_digit(number[:11])
    if expected is None:
        raise RegisterError(field, "not a valid IIN/BIN: its first 11 digits have no check digit")
    if int(number[11]) != expected:
        raise RegisterError(
            field, f"check digit is {number[11]}, expected {expected}: the number is mistyped"
        )
    return number
