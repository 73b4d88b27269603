"""Request bodies: short, long and mixed-length texts, one or 32 per request.

Texts are made from a fixed word list with a seeded generator, so every system and every
run gets the same inputs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

WORDS = (
    "the a model server request batch token sentence answer fast slow quick brown fox jumps "
    "over lazy dog river mountain city night morning coffee music paper window garden "
    "language machine learning cluster network memory thread latency people house small "
    "large green blue red happy calm busy quiet market price report story friend teacher "
    "school travel train station road bridge summer winter spring autumn weather forecast "
    "computer screen keyboard library museum picture camera phone message letter"
).split()

SHORT_WORDS = (6, 9)  # ~10 tokens with [CLS]/[SEP]
LONG_WORDS = (100, 115)  # ~128 tokens
MIXED_LONG_SHARE = 0.1  # mixed: mostly short, one text in ten long


def _sentence(rng: random.Random, words: tuple[int, int]) -> str:
    count = rng.randint(*words)
    return " ".join(rng.choice(WORDS) for _ in range(count)).capitalize() + "."


def texts(length: str, count: int, seed: int = 0) -> list[str]:
    """``count`` texts of ``length`` short, long or mixed."""
    rng = random.Random(f"{length}-{seed}")
    out = []
    for _ in range(count):
        is_long = length == "long" or (length == "mixed" and rng.random() < MIXED_LONG_SHARE)
        out.append(_sentence(rng, LONG_WORDS if is_long else SHORT_WORDS))
    return out


@dataclass(frozen=True)
class Workload:
    """One kind of request: ``per_request`` texts of ``length``."""

    length: str  # short | long | mixed
    per_request: int  # 1 or 32

    @property
    def name(self) -> str:
        return f"{'single' if self.per_request == 1 else f'batch{self.per_request}'}-{self.length}"

    def requests(self, count: int = 256) -> list[list[str] | str]:
        """``count`` distinct request inputs (a string, or a list of texts)."""
        pool = texts(self.length, count * self.per_request)
        if self.per_request == 1:
            return pool
        return [pool[i : i + self.per_request] for i in range(0, len(pool), self.per_request)]


def parse(name: str) -> Workload:
    """``single-short``, ``batch32-mixed``... back into a Workload."""
    kind, length = name.split("-")
    per_request = 1 if kind == "single" else int(kind.removeprefix("batch"))
    if length not in ("short", "long", "mixed"):
        raise ValueError(f"unknown length {length!r} in workload {name!r}")
    return Workload(length, per_request)
