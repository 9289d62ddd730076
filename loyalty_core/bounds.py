"""The number and phone bounds of API.md's Conventions, in one place for every schema.

An amount is 0 ≤ x ≤ 10,000,000,000 fen; a quantity 1 ≤ x ≤ 1,000,000; ids, points and counts
fit in 0 ≤ x ≤ 2^53 − 1 (what a JavaScript client reads exactly). Anything outside is a 422 with
field errors, never a 500 further in.
"""
from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field

MAX_FEN = 10_000_000_000
MAX_QTY = 1_000_000
MAX_COUNT = 2**53 - 1
MAX_LINES = 500
MAX_BATCH = 500

PHONE_PATTERN = r"^1[3-9][0-9]{9}$"
PHONE = re.compile(PHONE_PATTERN)

Fen = Annotated[int, Field(ge=0, le=MAX_FEN, description="fen")]
Qty = Annotated[int, Field(ge=1, le=MAX_QTY)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Id = Annotated[int, Field(ge=1, le=MAX_COUNT)]
Phone = Annotated[str, Field(pattern=PHONE_PATTERN, min_length=11, max_length=11,
                             description="11-digit mainland mobile, ASCII digits")]


def is_phone(value: str) -> bool:
    """ASCII only: ``\\d`` would also take full-width and other Unicode digits."""
    return value.isascii() and PHONE.match(value) is not None
