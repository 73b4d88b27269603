"""The settings of ``generate()`` that may differ between the rows of one running batch
(no torch here: the ingress imports it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Sampling:
    """The resolved generation settings of one sequence (nothing left to default)."""

    max_new_tokens: int
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None

    @property
    def plain_greedy(self) -> bool:
        """Whether the next token is the argmax of the raw logits."""
        return not self.do_sample and self.repetition_penalty == 1.0

    def processors(self) -> Any:
        """The ``LogitsProcessorList`` ``generate()`` applies for these settings, in its
        order."""
        from transformers import (
            LogitsProcessorList,
            RepetitionPenaltyLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        processors = LogitsProcessorList()
        if self.repetition_penalty != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(float(self.repetition_penalty)))
        if self.do_sample:
            if self.temperature != 1.0:
                processors.append(TemperatureLogitsWarper(float(self.temperature)))
            if self.top_k is not None and self.top_k != 0:
                processors.append(TopKLogitsWarper(top_k=int(self.top_k)))
            if self.top_p < 1.0:
                processors.append(TopPLogitsWarper(top_p=float(self.top_p)))
        return processors


