"""OpenAI's text-generation API: ``POST /v1/completions`` and ``POST /v1/chat/completions``
bodies, their answers and their stream chunks.

Fields OpenAI defines that we cannot honour (log probabilities, logit bias, tools,
penalties other than 0...) are refused by name with 400, never silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from serving.schemas.text import refuse_unreadable_text
from serving.tasks.text_generation import MAX_NEW_TOKENS, MIN_LOGIT_DIVISOR

MAX_CHOICES = 16
MAX_STOP_SEQUENCES = 16
MAX_MESSAGES = 256
# Choice j of a seeded request samples with seed + j: leave room for the last choice.
MAX_SEED = 2**63 - 1 - MAX_CHOICES

StopSequence = Annotated[str, Field(min_length=1)]
StopSequences = Annotated[list[StopSequence], Field(max_length=MAX_STOP_SEQUENCES)]


def _refuse_unsupported(data: Any, allowed: dict[str, tuple[Any, ...]]) -> Any:
    """``data`` unless it sets one of ``allowed``'s fields to a value not listed there."""
    if isinstance(data, dict):
        for name, values in allowed.items():
            if name in data and data[name] not in values:
                accepted = " or ".join(repr(value) for value in values)
                _refuse(f"{name}: not supported by this server (send {accepted}, or leave "
                        "it out)")
    return refuse_unreadable_text(data)


def _refuse(problem: str) -> None:
    # The message goes in the context: a template would read braces in it as fields.
    raise PydanticCustomError("unsupported", "{problem}", {"problem": problem})


class StreamOptions(BaseModel):
    include_usage: bool = Field(False, description="Send a last chunk with the usage.")


class _GenerationRequest(BaseModel):
    """What both routes accept."""

    model: str = Field(description="A served text-generation model.")
    temperature: float | None = Field(
        None, ge=0, le=2, description="0: greedy (deterministic); above 0: sampling. Left "
        f"out: 1 (OpenAI's default). Below {MIN_LOGIT_DIVISOR} counts as 0.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling mass.")
    n: int = Field(1, ge=1, le=MAX_CHOICES, description="Choices per prompt.")
    stream: bool = Field(False, description="Answer Server-Sent Events, one chunk per token.")
    stream_options: StreamOptions | None = Field(None, description="Only with stream.")
    stop: StopSequence | StopSequences | None = Field(
        None, description="Stop at the first of these (excluded from the text).")
    seed: int | None = Field(
        None, ge=0, le=MAX_SEED, description="Sampling: the same seed gives the same text "
        "(choice j samples with seed + j).")
    presence_penalty: float | None = Field(None, description="Only 0 is supported.")
    frequency_penalty: float | None = Field(None, description="Only 0 is supported.")
    user: str | None = Field(None, description="Accepted and ignored.")
    # Beyond OpenAI's API, as vLLM accepts them (the openai client's ``extra_body``).
    top_k: int | None = Field(None, ge=1, le=100_000, description="Sample among the k best.")
    repetition_penalty: float | None = Field(
        None, ge=MIN_LOGIT_DIVISOR, le=100, description="Penalty on repeated tokens (1: none).")

    @model_validator(mode="after")
    def _stream_options_need_stream(self) -> _GenerationRequest:
        if self.stream_options is not None and not self.stream:
            _refuse("stream_options: only allowed with stream: true")
        return self

    def stop_sequences(self) -> list[str]:
        """``stop`` as a list."""
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def include_usage(self) -> bool:
        """Whether a stream ends with a usage chunk."""
        return self.stream_options is not None and self.stream_options.include_usage


_NOT_SET = (None, 0, 0.0)


class CompletionRequest(_GenerationRequest):
    """``POST /v1/completions``: continue one prompt or several."""

    prompt: StrictStr | list[StrictStr] | list[int] | list[list[int]] = Field(
        description="A text or a list of texts (token-id prompts are refused with 400).")
    max_tokens: int | None = Field(
        16, ge=1, le=MAX_NEW_TOKENS, description="Tokens to generate (OpenAI's default: 16; "
        "null: the model's generation config, else 256), capped by the model window.")
    echo: bool = Field(False, description="Put the prompt before each choice's text.")

    @model_validator(mode="before")
    @classmethod
    def _supported(cls, data: Any) -> Any:
        return _refuse_unsupported(data, {
            "logprobs": (None,), "logit_bias": (None, {}), "suffix": (None, ""),
            "best_of": (None, 1), "presence_penalty": _NOT_SET,
            "frequency_penalty": _NOT_SET,
        })


class TextPart(BaseModel):
    """One part of a message's content; only text parts are served."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: StrictStr


class ChatMessage(BaseModel):
    """One message of the conversation (``developer`` is read as ``system``)."""

    role: Literal["system", "developer", "user", "assistant"]
    content: StrictStr | list[TextPart] | None = Field(
        description="A text, or text parts (joined with newlines).")
    name: str | None = Field(None, description="Accepted and ignored.")


class ChatCompletionRequest(_GenerationRequest):
    """``POST /v1/chat/completions``: the assistant's next message."""

    messages: list[ChatMessage] = Field(
        min_length=1, max_length=MAX_MESSAGES,
        description="The conversation, put through the model's chat template.")
    max_completion_tokens: int | None = Field(
        None, ge=1, le=MAX_NEW_TOKENS, description="Tokens to generate (null: the model's "
        "generation config, else 256), capped by the model window.")
    max_tokens: int | None = Field(
        None, ge=1, le=MAX_NEW_TOKENS, description="Deprecated name of "
        "max_completion_tokens (which wins when both are sent).")

    @model_validator(mode="before")
    @classmethod
    def _supported(cls, data: Any) -> Any:
        return _refuse_unsupported(data, {
            "logprobs": (None, False), "top_logprobs": (None, 0), "logit_bias": (None, {}),
            "tools": (None, []), "tool_choice": (None, "none"), "functions": (None, []),
            "function_call": (None, "none"), "response_format": (None, {"type": "text"}),
            "presence_penalty": _NOT_SET, "frequency_penalty": _NOT_SET,
        })


# --- answers -------------------------------------------------------------------------------

FinishReason = Literal["stop", "length"]


class Usage(BaseModel):
    prompt_tokens: int = Field(description="Tokens of the prompts (each counted once), "
                               "after the chat template.")
    completion_tokens: int = Field(description="Tokens generated, all choices together.")
    total_tokens: int


class CompletionChoice(BaseModel):
    index: int = Field(description="prompt index × n + choice.")
    text: str
    finish_reason: FinishReason | None
    logprobs: None = None


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str = Field(description="The served name the request gave.")
    choices: list[CompletionChoice]
    usage: Usage | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: None = None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


# --- stream chunks (each a Server-Sent Event; the stream ends with ``data: [DONE]``) ------

class ChatDelta(BaseModel):
    """What a chunk adds to a choice's message: first the role, then text."""

    role: Literal["assistant"] | None = None
    content: str | None = None

    @model_serializer(mode="wrap")
    def _set_fields_only(self, handler: Any) -> dict[str, Any]:
        # OpenAI sends the role once and ends with an empty delta ``{}``: no nulls.
        return {key: value for key, value in handler(self).items() if value is not None}


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    """One event of a streamed chat answer; with ``stream_options.include_usage`` every
    chunk has ``usage`` (null but in the last, which has no choices)."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class CompletionChunk(BaseModel):
    """One event of a streamed completion: ``choices`` hold new text (``object`` is
    ``text_completion`` as in OpenAI's streams); ``usage`` as in chat chunks."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
