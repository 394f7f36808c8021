"""The argument checks every layer uses (configs, loaders, readers, the teacher, evaluation).

Each failure is one line, ``"<name>: expected <what>, got <value>"``: a TypeError when the value is of the
wrong kind (a bool is never an int or a number), a ValueError when it is of the right kind but out of range.
Each check returns the value as the plain Python type (a numpy integer comes back as an int). Every argument check
in crossjepa goes through here (tests/test_validate_everywhere.py looks for hand-written ones).
"""

from __future__ import annotations

import math
import numbers
import operator
import re
from typing import Iterable, Optional


def _or_none(what: str, optional: bool) -> str:
    return f"{what} or None" if optional else what


def _int_range(lo: Optional[int], hi: Optional[int]) -> str:
    if lo is not None and hi is not None:
        return f"an int in [{lo}, {hi}]"
    if lo == 1:
        return "a positive int"
    if lo is not None:
        return f"an int >= {lo}"
    return "an int" if hi is None else f"an int <= {hi}"


def is_int(value) -> bool:
    """An integer as operator.index takes it (numpy and torch integer scalars too), never a bool."""
    if isinstance(value, bool):
        return False
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def check_int(
    name: str, value, lo: Optional[int] = None, hi: Optional[int] = None, *, optional: bool = False, why: str = ""
) -> Optional[int]:
    """An int (`is_int`) in [lo, hi] (a bound left None is open); None too if optional. `why` says where a bound
    comes from (e.g. "points per cloud") and is shown after the range."""
    if optional and value is None:
        return None
    what = _or_none(_int_range(lo, hi), optional) + (f" ({why})" if why else "")
    if not is_int(value):
        raise TypeError(f"{name}: expected {what}, got {value!r}")
    value = operator.index(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(f"{name}: expected {what}, got {value!r}")
    return value


def _number_range(lo: Optional[float], hi: Optional[float], lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo == 0 and lo_open:
        return "a positive number"
    if lo is not None:
        return f"a number {'>' if lo_open else '>='} {lo:g}"
    return "a finite number" if hi is None else f"a number {'<' if hi_open else '<='} {hi:g}"


def check_number(
    name: str,
    value,
    lo: Optional[float] = None,
    hi: Optional[float] = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    optional: bool = False,
) -> Optional[float]:
    """A finite real number (never a bool) between lo and hi, each bound closed unless `*_open`; None too if
    optional."""
    if optional and value is None:
        return None
    what = _or_none(_number_range(lo, hi, lo_open, hi_open), optional)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected {what}, got {value!r}")
    below = lo is not None and (value <= lo if lo_open else value < lo)
    above = hi is not None and (value >= hi if hi_open else value > hi)
    if below or above or not math.isfinite(value):
        raise ValueError(f"{name}: expected {what}, got {value!r}")
    return float(value)


def check_positive(name: str, value) -> float:
    """A finite number > 0 (an int or a float)."""
    return check_number(name, value, 0, lo_open=True)


def check_choice(name: str, value, choices: Iterable, *, why: str = ""):
    """One of `choices` (shown in the message in their order); `why` says where they come from."""
    choices = tuple(choices)
    if value not in choices:
        reason = f" ({why})" if why else ""
        raise ValueError(f"{name}: expected one of {', '.join(map(str, choices))}{reason}, got {value!r}")
    return value


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected true or false, got {value!r}")
    return value


def check_str(name: str, value, *, allow_empty: bool = False) -> str:
    what = "a string" if allow_empty else "a non-empty string"
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected {what}, got {value!r}")
    if not (value or allow_empty):
        raise ValueError(f"{name}: expected {what}, got {value!r}")
    return value


def check_device(name: str, value) -> str:
    """A --device value: auto, cpu, cuda or cuda:N (device.resolve_device turns it into a torch.device)."""
    if not isinstance(value, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise ValueError(f"{name}: expected auto, cpu, cuda or cuda:N, got {value!r}")
    return value
