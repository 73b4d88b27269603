"""text-generation: the answers of ``transformers.pipeline("text-generation")`` (torch only).

Decoder-only models generate in their own path, not through ``ModelRunner.run`` (which
right-pads for one forward pass): :meth:`TextGeneration.generate` tokenizes the prompts,
groups rows by their resolved ``generate()`` settings, left-pads each group and decodes
like the pipeline. :meth:`TextGeneration.stream` generates one prompt token by token.
The ``Generator`` deployment (deployments/generator.py) batches requests around them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field, field_validator

from serving.decoding.sampling import Sampling
from serving.errors import InputTooLongError, InvalidInputError
from serving.tasks.base import TaskParameters
from serving.tasks.generative import GenerativeTask, cancel_criteria, padded
from serving.tasks.streaming import TokenStreamer, cut_at_stop
from serving.tokenization import tokenize

MAX_NEW_TOKENS = 2048
# What the pipeline uses when neither the request nor the model's generation config says.
PIPELINE_MAX_NEW_TOKENS = 256
PIPELINE_TEMPERATURE = 0.7
# The smallest temperature and repetition_penalty: generate() divides logits by them, and
# a tinier divisor (1e-300) overflows them to inf, which sampling fails on (a 500).
MIN_LOGIT_DIVISOR = 1e-3


class TextGenerationParameters(TaskParameters):
    max_new_tokens: int | None = Field(
        None, ge=1, le=MAX_NEW_TOKENS,
        description="Tokens to generate; default the model's generation config, else 256 "
        "(as the pipeline), capped by the model window.",
    )
    return_full_text: bool = Field(True, description="Prepend the prompt to the answer.")
    do_sample: bool = Field(False, description="Sample instead of greedy / beam search.")
    temperature: float | None = Field(
        None, ge=MIN_LOGIT_DIVISOR, le=100, description="Sampling temperature."
    )
    top_k: int | None = Field(None, ge=1, le=100_000, description="Sample among the k best.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling mass.")
    num_beams: int = Field(1, ge=1, le=16, description="Beam search width (1: no beams).")
    repetition_penalty: float | None = Field(
        None, ge=MIN_LOGIT_DIVISOR, le=100, description="Penalty on repeated tokens (1: none)."
    )
    seed: int | None = Field(
        None, ge=0, le=2**63 - 1,
        description="With do_sample: the same request sent alone gets the same answer.",
    )
    stop: list[str] = Field(
        default_factory=list, max_length=16,
        description="Cut the generated text at the first of these (excluded).",
    )
    stream: bool = Field(False, description="HTTP only: answer Server-Sent Events per token.")
    details: bool = Field(
        False, description="Add `details` to each answer (and to a stream's last event): "
        "finish_reason (length, eos_token, stop_sequence), generated_tokens, prompt_tokens.",
    )

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop(cls, stop: Any) -> Any:
        return [stop] if isinstance(stop, str) else stop

    @field_validator("stop")
    @classmethod
    def _non_empty(cls, stop: list[str]) -> list[str]:
        if any(not item for item in stop):
            raise ValueError("stop sequences must be non-empty strings")
        return stop


@dataclass(frozen=True)
class Prompt:
    """One tokenized prompt, checked against the model window."""

    text: str
    input_ids: tuple[int, ...]
    max_new_tokens: int


class TextGeneration(GenerativeTask):
    name: ClassVar[str] = "text-generation"
    parameters = TextGenerationParameters
    model_class = "AutoModelForCausalLM"
    streams: ClassVar[bool] = True

    def __init__(self, tokenizer: Any, model: Any) -> None:
        # The pipeline left-pads decoder-only models and pads with EOS when there is no pad.
        tokenizer.padding_side = "left"
        super().__init__(tokenizer, model)
        self.pad_token_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None
            else tokenizer.eos_token_id
        )
        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") \
            else model.config
        self.model_window: int | None = getattr(config, "max_position_embeddings", None)
        self.model_defaults = model.generation_config.to_diff_dict()
        eos = model.generation_config.eos_token_id
        eos = tokenizer.eos_token_id if eos is None else eos
        self.eos_token_ids: tuple[int, ...] = tuple(
            [] if eos is None else [eos] if isinstance(eos, int) else eos)

    # --- request preparation (no model call) -----------------------------------------

    def prepare(self, texts: Sequence[str], params: TextGenerationParameters) -> list[Prompt]:
        """Tokenize ``texts`` and resolve each one's number of new tokens.

        Raises:
            InvalidInputError: ``max_new_tokens`` does not fit in the model window, naming it.
            InputTooLongError: a prompt leaves no room in the window.
        """
        encoded = tokenize(self.tokenizer, list(texts))["input_ids"]
        return [
            self._prompt(text, ids, "inputs" if len(texts) == 1 else f"inputs[{index}]", params)
            for index, (text, ids) in enumerate(zip(texts, encoded, strict=True))
        ]

    def prepare_chat(self, messages: list[dict], params: TextGenerationParameters) -> Prompt:
        """The prompt of a chat: ``messages`` through the tokenizer's chat template, with
        the assistant's turn opened.

        Raises:
            InvalidInputError: the model has no chat template, or it fails on ``messages``.
        """
        if not getattr(self.tokenizer, "chat_template", None):
            raise InvalidInputError(
                "this model has no chat template (its tokenizer_config.json defines none): "
                "send a completion (a plain prompt) instead"
            )
        try:
            ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                     tokenize=True, return_dict=True)
        except Exception as exc:  # a template's own checks (roles, alternation) raise
            raise InvalidInputError(f"messages: the chat template refused them: {exc}") from None
        text = self.tokenizer.decode(ids["input_ids"])
        return self._prompt(text, list(ids["input_ids"]), "messages", params)

    def _prompt(self, text: str, ids: Sequence[int], where: str,
                params: TextGenerationParameters) -> Prompt:
        room = None if self.model_window is None else self.model_window - len(ids)
        if room is not None and room < 1:
            raise InputTooLongError(
                f"{where} has {len(ids)} tokens; the model window of "
                f"{self.model_window} tokens leaves no room to generate"
            )
        new_tokens = params.max_new_tokens
        if new_tokens is None:
            new_tokens = self._default_new_tokens(len(ids))
            if room is not None:
                new_tokens = min(new_tokens, room)
        elif room is not None and new_tokens > room:
            raise InvalidInputError(
                f"parameters.max_new_tokens: {new_tokens} new tokens after the "
                f"{len(ids)} tokens of {where} exceed the model window of {self.model_window} "
                f"tokens; at most {room}"
            )
        return Prompt(text, tuple(ids), new_tokens)

    def _default_new_tokens(self, prompt_length: int) -> int:
        if "max_new_tokens" in self.model_defaults:
            return int(self.model_defaults["max_new_tokens"])
        if "max_length" in self.model_defaults:
            return max(1, int(self.model_defaults["max_length"]) - prompt_length)
        return PIPELINE_MAX_NEW_TOKENS

    def generate_kwargs(self, prompt: Prompt, params: TextGenerationParameters) -> dict:
        """The ``generate()`` keyword arguments of one prompt, as the pipeline passes them."""
        kwargs: dict[str, Any] = {
            "max_new_tokens": prompt.max_new_tokens,
            "do_sample": params.do_sample,
            "num_beams": params.num_beams,
            "pad_token_id": self.pad_token_id,
        }
        if params.repetition_penalty is not None:
            kwargs["repetition_penalty"] = params.repetition_penalty
        if params.do_sample:  # sampling settings mean nothing otherwise (generate warns)
            for key in ("temperature", "top_k", "top_p"):
                if getattr(params, key) is not None:
                    kwargs[key] = getattr(params, key)
            if "temperature" not in kwargs and "temperature" not in self.model_defaults:
                kwargs["temperature"] = PIPELINE_TEMPERATURE
        return kwargs

    def sampling(self, prompt: Prompt, params: TextGenerationParameters) -> Sampling:
        """The settings continuous batching decodes ``prompt`` with: the request's, else
        the model's generation config, else ``generate()``'s defaults (top_k 50)."""
        kwargs = self.generate_kwargs(prompt, params)

        def setting(key: str, default: Any) -> Any:
            value = kwargs.get(key, self.model_defaults.get(key))
            return default if value is None else value

        return Sampling(
            max_new_tokens=prompt.max_new_tokens, do_sample=params.do_sample,
            temperature=float(setting("temperature", 1.0)), top_k=setting("top_k", 50),
            top_p=float(setting("top_p", 1.0)),
            repetition_penalty=float(setting("repetition_penalty", 1.0)), seed=params.seed,
        )

    def answer(self, prompt: Prompt, ids: Sequence[int], params: TextGenerationParameters,
               chat: bool = False) -> dict:
        """The answer of ``prompt`` from its generated ``ids`` (its EOS included when it
        ended there): ``{"generated_text"}``, and ``details`` when asked. A chat answer is
        the new text only."""
        new_text = self.tokenizer.decode(list(ids), skip_special_tokens=True)
        cut = cut_at_stop(new_text, params.stop)
        answer: dict[str, Any] = {
            "generated_text": cut if chat or not params.return_full_text else prompt.text + cut
        }
        if params.details:
            reason = ("stop_sequence" if len(cut) < len(new_text)
                      else "eos_token" if ids and ids[-1] in self.eos_token_ids else "length")
            answer["details"] = {"finish_reason": reason, "generated_tokens": len(ids),
                                 "prompt_tokens": len(prompt.input_ids)}
        return answer

    # --- generation --------------------------------------------------------------------

    def generate(
        self,
        model: Any,
        requests: Sequence[tuple[Sequence[Prompt], TextGenerationParameters]],
        max_batch_size: int = 32,
    ) -> list[list[list[dict]]]:
        """Answers (``[{"generated_text"}]`` per prompt) of several requests.

        Rows share a ``generate()`` call only with identical settings; a seeded sampling
        request never shares one, so sent alone it always gets the same answer.
        """
        def settings(prompt: Prompt, params: TextGenerationParameters):
            kwargs = self.generate_kwargs(prompt, params)
            return tuple(sorted(kwargs.items())), kwargs, params.do_sample

        generated = self._generate_grouped(
            requests, settings,
            lambda prompts, kwargs, params: self._generate_rows(model, prompts, kwargs,
                                                                params.seed),
            max_batch_size,
        )
        answers = []
        for r, (prompts, params) in enumerate(requests):
            answers.append([[self.answer(prompt, generated[r, p], params)]
                            for p, prompt in enumerate(prompts)])
        return answers

    def _until_eos(self, ids: list[int]) -> list[int]:
        """Generated ids up to the first EOS (included): what follows is padding."""
        end = next((i for i, token in enumerate(ids) if token in self.eos_token_ids), None)
        return ids if end is None else ids[: end + 1]

    def _generate_rows(
        self, model: Any, prompts: Sequence[Prompt], kwargs: dict, seed: int | None,
        streamer: Any = None, stopping: Any = None,
    ) -> list[list[int]]:
        batch = padded([p.input_ids for p in prompts], self.pad_token_id, True, model.device)
        extra = {"streamer": streamer} if streamer is not None else {}
        if stopping is not None:
            extra["stopping_criteria"] = stopping
        output = self._run_generate(model, batch, seed, kwargs["do_sample"], **kwargs, **extra)
        width = batch["input_ids"].shape[1]
        return [self._until_eos(row[width:].tolist()) for row in output]

    def stream(
        self, model: Any, prompt: Prompt, params: TextGenerationParameters,
        emit: Callable[[dict], None], cancelled: threading.Event | None = None,
    ) -> None:
        """Generate ``prompt`` calling ``emit`` once per new token (TGI events): ``{"token":
        {"id", "text", "special"}, "generated_text": None}``, the last one carrying
        ``generated_text``. Token texts concatenate to the generated text (cut at ``stop``).

        Raises:
            InvalidInputError: beam search cannot stream.
        """
        if params.num_beams > 1:
            raise InvalidInputError("parameters.num_beams: streaming needs num_beams=1")
        cancelled = cancelled or threading.Event()
        streamer = TokenStreamer(self.tokenizer, params.stop, emit, cancelled)
        (ids,) = self._generate_rows(
            model, [prompt], self.generate_kwargs(prompt, params), params.seed,
            streamer=streamer, stopping=cancel_criteria(cancelled),
        )
        streamer.finish(self.answer(prompt, ids, params))
