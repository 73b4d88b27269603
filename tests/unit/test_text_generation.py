"""text-generation without Ray: parameters, stop sequences, grouping, left padding, streaming
and parity with ``transformers.pipeline("text-generation")``."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from transformers import pipeline

from serving.errors import InputTooLongError, InvalidInputError
from serving.load_settings import LoadSettings
from serving.runner import ModelRunner
from serving.tasks import task_class
from serving.tasks.streaming import _held_back, cut_at_stop
from serving.tasks.text_generation import TextGeneration, TextGenerationParameters

PROMPTS = ["the movie", "hello world, the capital of France is", "café 東京 🙂", "a"]
Params = TextGenerationParameters


@pytest.fixture(scope="module")
def runner(model_dirs) -> ModelRunner:
    return ModelRunner.load(LoadSettings(name="m", model=str(model_dirs["gpt2"]),
                                         task="text-generation", device="cpu", num_threads=2))


@pytest.fixture(scope="module")
def reference(model_dirs):
    return pipeline("text-generation", model=str(model_dirs["gpt2"]), device="cpu")


def generate(runner, texts, **parameters):
    params = Params(**parameters)
    task: TextGeneration = runner.task
    (answers,) = task.generate(runner.model, [(task.prepare(texts, params), params)])
    return answers


def test_registered():
    assert task_class("text-generation") is TextGeneration
    assert TextGeneration.model_class == "AutoModelForCausalLM"


@pytest.mark.parametrize("parameters", [
    {"max_new_tokens": 0}, {"max_new_tokens": 100_000}, {"num_beams": 0}, {"num_beams": 64},
    {"temperature": -1}, {"temperature": 0}, {"top_p": 0}, {"top_p": 1.5}, {"top_k": 0},
    {"seed": -1}, {"stop": [""]}, {"stop": ["a"] * 17}, {"unknown": 1},
])
def test_invalid_parameters_are_rejected_by_name(parameters):
    with pytest.raises(ValidationError) as error:
        Params(**parameters)
    assert next(iter(parameters)) in str(error.value)


def test_parameter_defaults_and_stop_string():
    params = Params(stop="\n")
    assert params.stop == ["\n"]
    assert params.return_full_text and not params.do_sample and params.num_beams == 1
    assert params.max_new_tokens is None


def test_cut_at_stop():
    assert cut_at_stop("hello world. bye", [".", " w"]) == "hello"
    assert cut_at_stop("hello", ["x"]) == "hello"
    assert cut_at_stop("hello", []) == "hello"
    assert _held_back("hello wo", ["world"]) == 2
    assert _held_back("hello", ["world"]) == 0


def test_window_checks_name_the_parameter(runner):
    task: TextGeneration = runner.task
    with pytest.raises(InvalidInputError, match="parameters.max_new_tokens"):
        task.prepare(["the movie"], Params(max_new_tokens=2000))
    with pytest.raises(InputTooLongError, match="inputs\\[1\\]"):
        task.prepare(["a", "the " * 200], Params(max_new_tokens=1))
    # The default (256, as the pipeline) is capped by what the window leaves.
    (prompt,) = task.prepare(["the movie"], Params())
    assert prompt.max_new_tokens == task.model_window - len(prompt.input_ids)


@pytest.mark.parametrize("parameters", [
    {"max_new_tokens": 12},
    {"max_new_tokens": 12, "num_beams": 3},
    {"max_new_tokens": 8, "return_full_text": False, "repetition_penalty": 1.3},
    {"max_new_tokens": 9, "num_beams": 4, "repetition_penalty": 1.2},
])
def test_equals_pipeline(runner, reference, parameters):
    answers = generate(runner, PROMPTS, **parameters)
    assert answers == [reference(text, do_sample=False, **parameters) for text in PROMPTS]


def test_left_padding_gives_the_same_text_as_alone(runner):
    together = generate(runner, PROMPTS, max_new_tokens=10)
    assert together == [generate(runner, [text], max_new_tokens=10)[0] for text in PROMPTS]


def test_rows_are_grouped_by_generation_settings(runner, monkeypatch):
    task: TextGeneration = runner.task
    calls = []
    original = task._generate_rows

    def spy(model, prompts, kwargs, seed, **extra):
        calls.append((len(prompts), kwargs["max_new_tokens"], kwargs["num_beams"]))
        return original(model, prompts, kwargs, seed, **extra)

    monkeypatch.setattr(task, "_generate_rows", spy)
    requests = [(["a", "the movie"], Params(max_new_tokens=3)),
                (["hello"], Params(max_new_tokens=3, stop=["x"], return_full_text=False)),
                (["hello"], Params(max_new_tokens=5)),
                (["hello"], Params(max_new_tokens=3, num_beams=2))]
    answers = task.generate(runner.model, [(task.prepare(t, p), p) for t, p in requests])
    # stop and return_full_text do not change generate(): those rows share a call.
    assert sorted(calls) == [(1, 3, 2), (1, 5, 1), (3, 3, 1)]
    assert [len(a) for a in answers] == [2, 1, 1, 1]
    assert answers[2] == generate(runner, ["hello"], max_new_tokens=5)


def test_seeded_sampling_is_reproducible_and_never_shares_a_call(runner):
    first = generate(runner, PROMPTS, max_new_tokens=10, do_sample=True, seed=7)
    assert first == generate(runner, PROMPTS, max_new_tokens=10, do_sample=True, seed=7)
    task: TextGeneration = runner.task
    params = Params(max_new_tokens=10, do_sample=True, seed=7)
    other = Params(max_new_tokens=10, do_sample=True, seed=7, top_k=50)
    answers = task.generate(runner.model, [(task.prepare(PROMPTS, params), params),
                                           (task.prepare(["hello"], other), other)])
    assert answers[0] == first


def test_stop_sequences_cut_the_generated_text(runner):
    (full,) = generate(runner, ["the movie"], max_new_tokens=12, return_full_text=False)
    text = full[0]["generated_text"]
    stop = text[3:5]
    (cut,) = generate(runner, ["the movie"], max_new_tokens=12, return_full_text=False,
                      stop=[stop, "never there"])
    assert cut[0]["generated_text"] == text[: text.find(stop)]
    (with_prompt,) = generate(runner, ["the movie"], max_new_tokens=12, stop=[stop])
    assert with_prompt[0]["generated_text"] == "the movie" + text[: text.find(stop)]


def stream(runner, text, **parameters):
    task: TextGeneration = runner.task
    params = Params(**parameters)
    events = []
    task.stream(runner.model, task.prepare([text], params)[0], params, events.append)
    return events


@pytest.mark.parametrize("text", ["the movie", "café 東京 🙂"])
def test_streaming_tokens_concatenate_to_the_answer(runner, text):
    events = stream(runner, text, max_new_tokens=15)
    assert len(events) == 15
    assert all(event["generated_text"] is None for event in events[:-1])
    (expected,) = generate(runner, [text], max_new_tokens=15)
    assert events[-1]["generated_text"] == expected[0]["generated_text"]
    assert text + "".join(e["token"]["text"] for e in events) == expected[0]["generated_text"]


def test_streaming_stops_at_a_stop_sequence(runner):
    (full,) = generate(runner, ["the movie"], max_new_tokens=12, return_full_text=False)
    text = full[0]["generated_text"]
    stop = text[3:5]
    events = stream(runner, "the movie", max_new_tokens=12, stop=[stop], return_full_text=False)
    assert "".join(e["token"]["text"] for e in events) == text[: text.find(stop)]
    assert events[-1]["generated_text"] == text[: text.find(stop)]
    assert len(events) < 12


def test_streaming_refuses_beam_search(runner):
    with pytest.raises(InvalidInputError, match="num_beams"):
        stream(runner, "the movie", max_new_tokens=3, num_beams=2)


def test_a_streamer_told_which_token_is_last_emits_each_at_once(runner):
    import threading

    from serving.tasks.streaming import TokenStreamer

    tokenizer = runner.task.tokenizer
    ids = tokenizer(" the movie was")["input_ids"]
    events: list[dict] = []
    streamer = TokenStreamer(tokenizer, [], events.append, threading.Event())
    for i, token in enumerate(ids[:-1]):
        streamer.add(token, last=False)
        assert len(events) == i + 1  # not held back for the next token
    streamer.add(ids[-1], last=True)
    assert len(events) == len(ids) - 1  # the last waits for the answer
    streamer.finish({"generated_text": "answer", "details": None})
    assert len(events) == len(ids) and events[-1]["generated_text"] == "answer"
    assert "".join(e["token"]["text"] for e in events) == tokenizer.decode(ids)
