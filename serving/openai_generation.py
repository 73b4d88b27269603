"""OpenAI's text-generation requests as our generation parameters, and the generator's
answers as OpenAI's (no Ray, no FastAPI).

Sampling follows OpenAI's API (and vLLM's): ``temperature`` left out means 1, so a request
without one samples; ``temperature: 0`` is greedy decoding and deterministic. A seed makes
sampling repeatable; choice ``j`` of ``n`` samples with ``seed + j``. ``max_tokens`` left
out of a completion means 16, as OpenAI's; a chat answer then gets the model's default.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from serving.errors import InvalidInputError, ServingError, describe_validation_errors
from serving.schemas.openai_generation import (
    AssistantMessage,
    ChatChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    FinishReason,
    Usage,
)
from serving.tasks.base import check_text
from serving.tasks.text_generation import MIN_LOGIT_DIVISOR, TextGenerationParameters

OPENAI_DEFAULT_TEMPERATURE = 1.0
# The generator's finish reasons (``details.finish_reason``) as OpenAI's.
_FINISH_REASONS: dict[str, FinishReason] = {
    "length": "length", "eos_token": "stop", "stop_sequence": "stop",
}


@dataclass(frozen=True)
class ResponseIds:
    """What every answer and chunk of one response repeats."""

    id: str
    created: int
    model: str


def response_ids(prefix: str, model: str, created: int) -> ResponseIds:
    """A new response id (``cmpl-...``, ``chatcmpl-...``) for the served name ``model``."""
    return ResponseIds(f"{prefix}-{uuid.uuid4().hex}", created, model)


@dataclass(frozen=True)
class Generated:
    """One generated text with what its ``details`` say."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any]) -> Generated:
        """Read one answer item ``{"generated_text", "details"}`` (generated with
        ``details=True``), or the last event of a stream (``details`` set)."""
        details = answer["details"]
        return cls(answer["generated_text"], finish_reason(details["finish_reason"]),
                   int(details["prompt_tokens"]), int(details["generated_tokens"]))


def finish_reason(reason: str) -> FinishReason:
    """OpenAI's finish reason for the generator's: ``length``, else ``stop`` (the end of
    sequence token or a stop sequence)."""
    return _FINISH_REASONS.get(reason, "stop")


def generation_parameters(
    request: CompletionRequest | ChatCompletionRequest,
) -> TextGenerationParameters:
    """The generation parameters of an OpenAI request (new text only, with details).

    Raises:
        InvalidInputError: the parameters are refused, naming them.
    """
    if isinstance(request, ChatCompletionRequest):
        max_tokens = request.max_completion_tokens or request.max_tokens
    else:
        max_tokens = request.max_tokens
    temperature = (OPENAI_DEFAULT_TEMPERATURE if request.temperature is None
                   else request.temperature)
    sampling = temperature >= MIN_LOGIT_DIVISOR
    settings: dict[str, Any] = {
        "max_new_tokens": max_tokens, "do_sample": sampling, "return_full_text": False,
        "stop": request.stop_sequences(), "details": True,
    }
    if sampling:  # greedy decoding ignores these (and generate() warns about them)
        settings.update(temperature=temperature, top_p=request.top_p, top_k=request.top_k,
                        seed=request.seed)
    if request.repetition_penalty is not None:
        settings["repetition_penalty"] = request.repetition_penalty
    try:
        return TextGenerationParameters(**settings)
    except ValidationError as exc:
        raise InvalidInputError(
            describe_validation_errors([dict(error) for error in exc.errors()])) from None


def choice_parameters(params: TextGenerationParameters, n: int) -> list[TextGenerationParameters]:
    """The parameters of each of ``n`` choices: with a seed, choice ``j`` gets ``seed + j``
    (the same seed would repeat the same text); without, each samples on its own."""
    if params.seed is None:
        return [params] * n
    return [params.model_copy(update={"seed": params.seed + j}) for j in range(n)]


def prompt_texts(request: CompletionRequest, max_texts: int) -> list[str]:
    """The prompts of a completion request.

    Args:
        request: the request.
        max_texts: the most texts a request generates (prompts × ``n``).

    Raises:
        InvalidInputError: token-id prompts, no prompt, too many, or one with nothing to
            read, naming it.
    """
    prompt = request.prompt
    if isinstance(prompt, str):
        prompts = [check_text(prompt, "prompt")]
    elif not prompt:
        raise InvalidInputError("prompt: an empty list; send a text or a list of texts")
    elif not isinstance(prompt[0], str):
        raise InvalidInputError("prompt: token-id prompts are not supported; send text")
    else:
        prompts = [check_text(text, f"prompt[{i}]") for i, text in enumerate(prompt)]
    if len(prompts) * request.n > max_texts:
        raise InvalidInputError(
            f"prompt: {len(prompts)} prompts × n={request.n} choices is more than the "
            f"limit of {max_texts} texts per request")
    return prompts


def chat_messages(request: ChatCompletionRequest) -> list[dict[str, str]]:
    """The conversation as the chat template reads it: ``{"role", "content"}`` with text
    content (text parts joined with newlines; ``developer`` read as ``system``)."""
    messages = []
    for message in request.messages:
        content = message.content
        if isinstance(content, list):
            content = "\n".join(part.text for part in content)
        role = "system" if message.role == "developer" else message.role
        messages.append({"role": role, "content": content or ""})
    return messages


def renamed(error: ServingError, names: Mapping[str, str]) -> ServingError:
    """``error`` with the field its message starts with named as the OpenAI request names
    it (``parameters.max_new_tokens`` → ``max_tokens``, ``inputs[1]`` → ``prompt[1]``)."""
    for ours, theirs in names.items():
        rest = error.message[len(ours):]
        if error.message.startswith(ours) and not rest[:1].isalnum() and rest[:1] != "_":
            return type(error)(theirs + rest)
    return error


def usage(prompt_tokens: int, completion_tokens: int) -> Usage:
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                 total_tokens=prompt_tokens + completion_tokens)


def completion_response(ids: ResponseIds, prompts: Sequence[str],
                        outputs: Sequence[Sequence[Generated]], echo: bool
                        ) -> CompletionResponse:
    """OpenAI's answer to a completion request.

    Args:
        ids: the response's id, time and model name.
        prompts: the request's prompts.
        outputs: per choice ``j`` (of ``n``), per prompt ``p``, its text: choice index
            ``p * n + j``.
        echo: put each prompt before its choices' texts.
    """
    n = len(outputs)
    choices = [
        CompletionChoice(index=p * n + j, text=(prompt if echo else "") + outputs[j][p].text,
                         finish_reason=outputs[j][p].finish_reason)
        for p, prompt in enumerate(prompts) for j in range(n)
    ]
    prompt_tokens = sum(generated.prompt_tokens for generated in outputs[0])
    completion_tokens = sum(g.completion_tokens for choice in outputs for g in choice)
    return CompletionResponse(id=ids.id, created=ids.created, model=ids.model, choices=choices,
                              usage=usage(prompt_tokens, completion_tokens))


def chat_response(ids: ResponseIds, outputs: Sequence[Generated]) -> ChatCompletionResponse:
    """OpenAI's answer to a chat request: one choice per output (the conversation's
    prompt tokens counted once)."""
    choices = [
        ChatChoice(index=j, message=AssistantMessage(content=generated.text),
                   finish_reason=generated.finish_reason)
        for j, generated in enumerate(outputs)
    ]
    completion_tokens = sum(generated.completion_tokens for generated in outputs)
    return ChatCompletionResponse(id=ids.id, created=ids.created, model=ids.model,
                                  choices=choices,
                                  usage=usage(outputs[0].prompt_tokens, completion_tokens))
