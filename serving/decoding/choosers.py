"""How one sequence picks its next token, with transformers' own logits processors.

Greedy rows without a repetition penalty take one vectorised ``argmax``; every other row
runs its own ``LogitsProcessorList`` (the processors ``generate()`` builds for the same
settings, in the same order) and, when sampling, draws from its own ``torch.Generator``:
a seeded request draws the same tokens whatever shares its batch, and the same tokens as
``generate()`` after ``torch.manual_seed(seed)`` when it runs alone.
"""

from __future__ import annotations

import random
from typing import Any

import torch

from serving.decoding.sampling import Sampling


class Chooser:
    """Picks the next token of one sequence; built once when the sequence is admitted."""

    def __init__(self, sampling: Sampling, device: Any) -> None:
        self.sampling = sampling
        self._processors = sampling.processors()
        self._generator: torch.Generator | None = None
        if sampling.do_sample:
            self._generator = torch.Generator(device=device)
            seed = sampling.seed if sampling.seed is not None else random.getrandbits(63)
            self._generator.manual_seed(seed)

    def choose(self, history: list[int], logits: torch.Tensor) -> int:
        """The next token after ``history`` (ids: prompt and generated) from this
        sequence's ``logits`` (1-D, float32)."""
        ids = torch.tensor([history], dtype=torch.long, device=logits.device)
        scores = self._processors(ids, logits[None, :])
        if self._generator is None:
            return int(scores.argmax(dim=-1))
        probs = torch.softmax(scores, dim=-1)
        return int(torch.multinomial(probs, 1, generator=self._generator))


def choose_tokens(logits: torch.Tensor, choosers: list[Chooser],
                  histories: list[list[int]]) -> list[int]:
    """The next token of every row of ``logits`` ([rows, vocab])."""
    logits = logits.float()
    tokens = logits.argmax(dim=-1).tolist()
    for row, chooser in enumerate(choosers):
        if not chooser.sampling.plain_greedy:
            tokens[row] = chooser.choose(histories[row], logits[row])
    return tokens
