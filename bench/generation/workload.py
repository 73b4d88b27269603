"""The generation benchmark's requests: a seeded list of prompts of mixed lengths, each with
a ``max_tokens`` drawn from a fixed set, and the bodies each system's route takes.

Every system gets the same list in the same order, greedy (temperature 0), so the work is
the same whichever server answers.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

SEED = 0
PROMPT_TOKENS = (16, 256)  # uniform between these, inclusive
MAX_TOKENS = (16, 32, 64, 128)
ROUTES = ("openai", "tgi")  # POST /v1/completions, or POST /models/{name} (TGI events)


@dataclass(frozen=True)
class Request:
    """One request of the list: its prompt, the prompt's token count and ``max_tokens``."""

    prompt: str
    prompt_tokens: int
    max_tokens: int


def requests(tokenizer: Any, count: int, seed: int = SEED,
             prompt_tokens: tuple[int, int] = PROMPT_TOKENS,
             max_tokens: tuple[int, ...] = MAX_TOKENS) -> list[Request]:
    """``count`` requests: prompts of words drawn from ``tokenizer``'s vocabulary (plain
    ASCII words that start with a space, so a prompt re-tokenizes to about as many
    tokens as it was built from), cut to a drawn length in tokens.

    Args:
        tokenizer: the model's tokenizer (lengths are counted in its tokens).
        count: how many requests.
        seed: the same seed and tokenizer give the same list.
        prompt_tokens: the range prompt lengths are drawn from.
        max_tokens: the values ``max_tokens`` is drawn from.
    """
    rng = random.Random(seed)
    words = sorted(
        text for text in (tokenizer.decode([i]) for i in range(len(tokenizer)))
        if len(text) > 2 and text[0] == " " and text[1:].isascii() and text[1:].isalpha()
    )
    made = []
    for _ in range(count):
        target = rng.randint(*prompt_tokens)
        ids = tokenizer(" ".join(w.strip() for w in rng.choices(words, k=target)))["input_ids"]
        prompt = tokenizer.decode(ids[:target])
        made.append(Request(prompt, len(tokenizer(prompt)["input_ids"]),
                            rng.choice(max_tokens)))
    return made


def body(request: Request, route: str, model: str) -> str:
    """The JSON body of ``request`` on ``route`` (see ``ROUTES``), streamed and greedy.

    ``openai``: ``POST /v1/completions`` with ``stream_options.include_usage`` so the
    stream ends with the token count. ``tgi``: ``POST /models/{name}`` with ``details`` so
    the last event carries ``generated_tokens``.
    """
    if route == "openai":
        return json.dumps({
            "model": model, "prompt": request.prompt, "max_tokens": request.max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True},
        })
    if route == "tgi":
        return json.dumps({"inputs": request.prompt, "stream": True, "parameters": {
            "max_new_tokens": request.max_tokens, "do_sample": False, "details": True,
            "return_full_text": False,
        }})
    raise ValueError(f"unknown route {route!r}: one of {', '.join(ROUTES)}")


def describe(made: list[Request]) -> dict[str, Any]:
    """The list in numbers (for the report): sizes, prompt lengths, max_tokens counts."""
    lengths = [r.prompt_tokens for r in made]
    counts: dict[int, int] = {}
    for r in made:
        counts[r.max_tokens] = counts.get(r.max_tokens, 0) + 1
    return {"requests": len(made), "seed": SEED, "prompt_tokens_min": min(lengths),
            "prompt_tokens_max": max(lengths), "prompt_tokens_mean": sum(lengths) / len(made),
            "max_tokens_counts": dict(sorted(counts.items())),
            "mean_max_tokens": sum(r.max_tokens for r in made) / len(made)}
