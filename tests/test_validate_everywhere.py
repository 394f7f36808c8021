"""Every argument check goes through crossjepa/validate.py, in its one message style: this test reads the
package's source for hand-written int, number and choice checks, and for the other style ("x must be ...")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from crossjepa.data.synthetic import SyntheticShapes

PACKAGE = Path(__file__).resolve().parents[1] / "crossjepa"
HAND_WRITTEN = {
    "a numeric type check": re.compile(r"not isinstance\([^()]+,\s*(?:int|float|numbers\.\w+)\)"),
    "a choice check": re.compile(r"if (?:self\.)?\w+ not in (?:\([^)]*\)|[A-Z_]{2,}):\n\s*raise (?!corrupt)"),
    "a range message": re.compile(
        r"raise \w+\(f?[\"'][^\"']*expected (?:a positive|an int\b|a non-negative|one of|a number|a finite|[<>]=? )"
    ),
    "the other message style": re.compile(r"raise \w+\(f?[\"'][^\"']*\b(?:must be|must have)\b"),
}


def test_no_argument_is_checked_by_hand():
    sources = [path for path in sorted(PACKAGE.rglob("*.py")) if path.name != "validate.py"]
    assert len(sources) > 50  # the package itself, not an empty folder
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{text[: m.start()].count(chr(10)) + 1}: {what}"
        for path in sources
        for text in [path.read_text()]
        for what, pattern in HAND_WRITTEN.items()
        for m in pattern.finditer(text)
    ]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("count", [True, 2.0, "3"])
def test_a_count_is_an_int_not_a_bool(count):
    with pytest.raises(TypeError, match="num_objects: expected a positive int"):
        SyntheticShapes(count)
