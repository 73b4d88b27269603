"""Unit tests of OpenAI's text-generation dialect: the request schemas, their conversion to
generation parameters, the answers built from the generator's, and OpenAI's error shape
(serving.schemas.openai_generation, serving.openai_generation, serving.errors)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from serving import errors
from serving.errors import describe_validation_errors, error_answer
from serving.openai_generation import (
    Generated,
    ResponseIds,
    chat_messages,
    chat_response,
    choice_parameters,
    completion_response,
    finish_reason,
    generation_parameters,
    prompt_texts,
    renamed,
)
from serving.schemas.openai_generation import ChatCompletionRequest, CompletionRequest

IDS = ResponseIds("cmpl-1", 1700000000, "gpt2")


def _completion(**fields) -> CompletionRequest:
    return CompletionRequest.model_validate({"model": "gpt2", "prompt": "hello", **fields})


def _chat(**fields) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "gpt2", "messages": [{"role": "user", "content": "hi"}], **fields})


def _refusal(schema, body) -> str:
    with pytest.raises(ValidationError) as failure:
        schema.model_validate(body)
    return describe_validation_errors([dict(e) for e in failure.value.errors()])


# --- parameters ------------------------------------------------------------------------------

def test_openai_defaults_sample_at_temperature_1_with_16_tokens():
    params = generation_parameters(_completion())
    assert params.do_sample and params.temperature == 1.0
    assert params.max_new_tokens == 16
    assert params.details and not params.return_full_text and params.stop == []


def test_temperature_0_is_greedy_and_drops_sampling_settings():
    params = generation_parameters(_completion(temperature=0, top_p=0.5, seed=3, top_k=4))
    assert not params.do_sample
    assert (params.temperature, params.top_p, params.top_k, params.seed) == (None,) * 4
    assert not generation_parameters(_completion(temperature=1e-4)).do_sample


def test_sampling_settings_pass_through():
    params = generation_parameters(_completion(
        temperature=0.5, top_p=0.9, top_k=7, seed=11, stop="\n", max_tokens=5,
        repetition_penalty=1.2))
    assert params.do_sample
    assert (params.temperature, params.top_p, params.top_k, params.seed) == (0.5, 0.9, 7, 11)
    assert params.stop == ["\n"] and params.max_new_tokens == 5
    assert params.repetition_penalty == 1.2


def test_chat_max_tokens_default_and_precedence():
    assert generation_parameters(_chat()).max_new_tokens is None
    assert generation_parameters(_chat(max_tokens=3)).max_new_tokens == 3
    assert generation_parameters(_chat(max_tokens=3, max_completion_tokens=9)
                                 ).max_new_tokens == 9


def test_choice_seeds_count_up_and_unseeded_choices_share_parameters():
    seeded = choice_parameters(generation_parameters(_completion(seed=5, temperature=1)), 3)
    assert [p.seed for p in seeded] == [5, 6, 7]
    plain = generation_parameters(_completion())
    assert choice_parameters(plain, 2) == [plain, plain]


# --- requests refused by name ------------------------------------------------------------------

@pytest.mark.parametrize(("body", "mentions"), [
    ({"logprobs": 2}, "logprobs"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"frequency_penalty": -1}, "frequency_penalty"),
    ({"best_of": 3}, "best_of"),
    ({"suffix": "x"}, "suffix"),
    ({"n": 17}, "n:"),
    ({"n": 0}, "n:"),
    ({"temperature": 2.5}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": 10**9}, "max_tokens"),
    ({"seed": -1}, "seed"),
    ({"stop": ""}, "stop"),
    ({"stop": ["a"] * 17}, "stop"),
    ({"stream_options": {"include_usage": True}}, "stream_options: only allowed"),
])
def test_completion_refusals_name_the_field(body, mentions):
    assert mentions in _refusal(CompletionRequest, {"model": "gpt2", "prompt": "x", **body})


def test_zero_penalties_and_plain_options_are_accepted():
    request = _completion(presence_penalty=0, frequency_penalty=0.0, logprobs=None, user="u",
                          best_of=1, stream=True, stream_options={"include_usage": True})
    assert request.include_usage()


@pytest.mark.parametrize(("body", "mentions"), [
    ({"tools": [{"type": "function"}]}, "tools"),
    ({"logprobs": True}, "logprobs"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
     "messages.0.content"),
])
def test_chat_refusals_name_the_field(body, mentions):
    base = {"model": "gpt2", "messages": [{"role": "user", "content": "hi"}]}
    assert mentions in _refusal(ChatCompletionRequest, {**base, **body})


def test_prompts_are_texts_within_the_limit():
    assert prompt_texts(_completion(), 4) == ["hello"]
    assert prompt_texts(_completion(prompt=["a", "b"], n=2), 4) == ["a", "b"]
    for prompt, mentions in [([1, 2], "token-id"), ([[1], [2]], "token-id"), ([], "empty"),
                             (["a", " "], r"prompt\[1\] is empty")]:
        with pytest.raises(errors.InvalidInputError, match=mentions):
            prompt_texts(_completion(prompt=prompt), 4)
    with pytest.raises(errors.InvalidInputError, match="3 prompts × n=2"):
        prompt_texts(_completion(prompt=["a", "b", "c"], n=2), 4)


def test_chat_messages_join_text_parts_and_read_developer_as_system():
    request = _chat(messages=[
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": None},
    ])
    assert chat_messages(request) == [{"role": "system", "content": "be brief"},
                                      {"role": "user", "content": "a\nb"},
                                      {"role": "assistant", "content": ""}]


# --- answers --------------------------------------------------------------------------------

def _generated(text: str, reason: str = "length", prompt: int = 3, new: int = 2) -> Generated:
    return Generated.from_answer({"generated_text": text, "details": {
        "finish_reason": reason, "prompt_tokens": prompt, "generated_tokens": new}})


@pytest.mark.parametrize(("ours", "theirs"), [
    ("length", "length"), ("eos_token", "stop"), ("stop_sequence", "stop")])
def test_finish_reasons(ours, theirs):
    assert finish_reason(ours) == theirs


def test_completion_choices_are_ordered_by_prompt_then_choice_with_usage():
    outputs = [[_generated("a0", prompt=3), _generated("b0", "eos_token", prompt=5)],
               [_generated("a1", prompt=3), _generated("b1", prompt=5, new=1)]]
    response = completion_response(IDS, ["A", "B"], outputs, echo=True)
    assert [(c.index, c.text, c.finish_reason) for c in response.choices] == [
        (0, "Aa0", "length"), (1, "Aa1", "length"), (2, "Bb0", "stop"), (3, "Bb1", "length")]
    assert response.usage is not None
    assert response.usage.model_dump() == {"prompt_tokens": 8, "completion_tokens": 7,
                                            "total_tokens": 15}
    body = response.model_dump(mode="json")
    assert body["object"] == "text_completion" and body["model"] == "gpt2"
    assert body["choices"][0]["logprobs"] is None


def test_chat_answer_counts_the_conversation_once():
    response = chat_response(IDS, [_generated("x", "stop_sequence", 7, 2), _generated("y")])
    body = response.model_dump(mode="json")
    assert body["object"] == "chat.completion"
    assert body["choices"][1] == {"index": 1, "finish_reason": "length", "logprobs": None,
                                  "message": {"role": "assistant", "content": "y"}}
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}


def test_renamed_names_the_openai_field_and_keeps_the_class():
    error = renamed(errors.InputTooLongError("inputs[1] has 500 tokens"), {"inputs": "prompt"})
    assert type(error) is errors.InputTooLongError and error.message == "prompt[1] has 500 tokens"
    same = errors.InvalidInputError("inputsx: other")
    assert renamed(same, {"inputs": "prompt"}) is same


# --- OpenAI's error shape -----------------------------------------------------------------

@pytest.mark.parametrize(("error", "status", "kind", "code", "param"), [
    (errors.InvalidInputError("temperature: too hot"), 400, "invalid_request_error", None,
     "temperature"),
    (errors.InputTooLongError("prompt has 500 tokens"), 400, "invalid_request_error",
     "context_length_exceeded", None),
    (errors.ModelNotFoundError("model 'x' is not served"), 404, "invalid_request_error",
     "model_not_found", None),
    (errors.UnauthorizedError("missing key"), 401, "invalid_request_error", "invalid_api_key",
     None),
    (errors.PayloadTooLargeError("big"), 413, "invalid_request_error", "payload_too_large",
     None),
    (errors.OverloadedError("busy"), 429, "server_error", "overloaded", None),
    (errors.UnavailableError("down"), 503, "server_error", "unhealthy", None),
    (errors.BackendError("boom"), 500, "server_error", "backend", None),
])
def test_openai_routes_answer_openai_errors(error, status, kind, code, param):
    assert error_answer(error, "/v1/completions") == (status, {"error": {
        "message": error.message, "type": kind, "param": param, "code": code}})
    assert error_answer(error, "/models/gpt2") == (errors.status_code_for(error),
                                                   error.to_body())
