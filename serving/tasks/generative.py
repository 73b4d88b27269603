"""The contract of tasks that run ``model.generate``: prepare, generate, stream.

A generative task tokenizes its own inputs (:meth:`GenerativeTask.prepare`, no model
call, so errors surface before any batch), generates for several requests at once
(:meth:`GenerativeTask.generate`: rows share a ``generate()`` call only when their
settings are identical, and a seeded sampling request never shares one) and, where it can,
streams one prompt token by token. The Generator deployment batches requests around them.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from typing import Any, ClassVar, TypeVar

from serving.errors import InvalidInputError
from serving.tasks.base import Task, TaskParameters

Row = TypeVar("Row")  # one prepared input (a prompt, a source text)
Out = TypeVar("Out")


def rng_devices(model: Any) -> list:
    """The devices whose random state ``torch.random.fork_rng`` must save for ``model``."""
    return [model.device] if getattr(model.device, "type", "cpu") == "cuda" else []


def padded(rows: Sequence[Sequence[int]], pad_token_id: int, left: bool, device: Any
           ) -> dict[str, Any]:
    """``input_ids`` and ``attention_mask`` tensors of ``rows``, padded on the left
    (decoder-only prompts) or the right (encoder inputs)."""
    import torch

    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, span] = torch.tensor(list(row), dtype=torch.long)
        mask[i, span] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


def cancel_criteria(cancelled: threading.Event) -> Any:
    """A ``StoppingCriteriaList`` that ends ``generate()`` once ``cancelled`` is set."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Cancelled(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), cancelled.is_set(), dtype=torch.bool)

    return StoppingCriteriaList([_Cancelled()])


class GenerativeTask(Task):
    """Base of the tasks served by the Generator deployment."""

    generates: ClassVar[bool] = True
    probe_parameters: ClassVar[dict[str, Any]] = {"max_new_tokens": 1}

    def __init__(self, tokenizer: Any, model: Any) -> None:
        """``model``: the loaded model, whose configuration subclasses read."""
        self.tokenizer = tokenizer
        # Sampling generate() calls run one at a time: they use torch's global RNG.
        self._lock = threading.Lock()

    @classmethod
    def from_model(
        cls, model: Any, source: str, revision: str | None = None, pooling: str = "auto",
        normalize: bool | None = None,
    ) -> GenerativeTask:
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(source, revision=revision), model)

    def forward(self, engine: Any, batch: dict[str, Any]) -> list[Any]:
        raise NotImplementedError(f"{self.name} runs through {type(self).__name__}.generate")

    def prepare(self, texts: Sequence[str], params: Any) -> list[Any]:
        """Tokenize ``texts`` and resolve their generation settings (no model call).

        Raises:
            InvalidInputError: an input or a parameter cannot be generated from, naming it.
        """
        raise NotImplementedError

    def generate(self, model: Any, requests: Sequence[tuple[Sequence[Any], Any]],
                 max_batch_size: int = 32) -> list[list[Any]]:
        """The answers of several requests (each: its prepared rows and its parameters),
        per request one answer per row."""
        raise NotImplementedError

    def stream(self, model: Any, prompt: Any, params: Any, emit: Callable[[dict], None],
               cancelled: threading.Event | None = None) -> None:
        """Generate one prepared row calling ``emit`` once per new token.

        Raises:
            InvalidInputError: this task cannot stream.
        """
        raise InvalidInputError(f"{self.name} cannot stream; streaming is for text-generation")

    def _generate_grouped(
        self,
        requests: Sequence[tuple[Sequence[Row], TaskParameters]],
        settings: Callable[[Row, Any], tuple[Hashable, Any, bool]],
        run: Callable[[list[Row], Any, Any], list[Out]],
        max_batch_size: int,
    ) -> dict[tuple[int, int], Out]:
        """Every row's output, keyed by ``(request, row)``.

        ``settings(row, params)`` is ``(key, value, sampling)``: rows with equal keys share
        ``run(rows, value, params)`` calls of at most ``max_batch_size`` rows, except that
        the rows of a request sampling with a seed share with no other request.
        """
        groups: dict[Hashable, list[tuple[int, int]]] = defaultdict(list)
        values: dict[Hashable, Any] = {}
        for r, (rows, params) in enumerate(requests):
            for i, row in enumerate(rows):
                key, value, sampling = settings(row, params)
                if sampling and getattr(params, "seed", None) is not None:
                    key = (key, "seeded request", r)
                values[key] = value
                groups[key].append((r, i))
        outputs: dict[tuple[int, int], Out] = {}
        for key, members in groups.items():
            params = requests[members[0][0]][1]
            for start in range(0, len(members), max_batch_size):
                chunk = members[start : start + max_batch_size]
                rows = [requests[r][0][i] for r, i in chunk]
                outputs.update(zip(chunk, run(rows, values[key], params), strict=True))
        return outputs

    def _run_generate(self, model: Any, batch: dict[str, Any], seed: int | None,
                      sampling: bool, **kwargs: Any) -> Any:
        """``model.generate(**batch, **kwargs)``, seeded when sampling with a seed, without
        disturbing the process's random state. Sampling calls take turns (they share torch's
        global random generator); greedy and beam search calls may run side by side."""
        import torch

        if not sampling:
            with torch.inference_mode():
                return model.generate(**batch, **kwargs)
        with self._lock, torch.random.fork_rng(devices=rng_devices(model)):
            if seed is not None:
                torch.manual_seed(seed)
            with torch.inference_mode():
                return model.generate(**batch, **kwargs)
