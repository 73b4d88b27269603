"""summarization, translation, text2text-generation without Ray: parity with the golden
answers of the transformers 4.x pipelines (tests/golden/record_seq2seq.py), identical
weights on transformers 5, generation settings and parameter validation."""

from __future__ import annotations

import json

import pytest
import torch
from pydantic import ValidationError

from serving.errors import InputTooLongError, InvalidInputError
from serving.load_settings import LoadSettings
from serving.runner import ModelRunner
from serving.tasks import TASKS, task_class
from serving.tasks.embedding_views import VIEWS
from serving.tasks.seq2seq import Seq2SeqParameters, Summarization, Text2TextGeneration, Translation

GOLDEN = json.loads((__import__("pathlib").Path(__file__).resolve().parents[1] / "golden"
                     / "seq2seq_answers.json").read_text())
CASES = [
    pytest.param(model, task, index, id=f"{model}-{task}-{index}")
    for model, recorded in GOLDEN["models"].items()
    for task, answers in recorded["tasks"].items()
    for index in range(len(answers["cases"]))
]


@pytest.fixture(scope="module")
def runners(request):
    from conftest import GOLDEN as DIR

    loaded: dict[tuple[str, str], ModelRunner] = {}

    def get(model: str, task: str) -> ModelRunner:
        if (model, task) not in loaded:
            loaded[model, task] = ModelRunner.load(LoadSettings(
                name="m", model=str(DIR / model), task=task, device="cpu", num_threads=2,
            ))
        return loaded[model, task]

    return get


def answer(runner: ModelRunner, texts, **parameters):
    params = runner.task.parameters(**parameters)
    (answers,) = runner.task.generate(runner.model, [(runner.task.prepare(texts, params),
                                                      params)])
    return answers


def test_registered_beside_the_summarization_view():
    assert task_class("summarization") is Summarization
    assert task_class("translation") is Translation
    assert task_class("text2text-generation") is Text2TextGeneration
    assert VIEWS["summarization"] is not TASKS["summarization"]
    assert Summarization.model_class == "AutoModelForSeq2SeqLM"


@pytest.mark.parametrize(("model", "task", "index"), CASES)
def test_equals_the_4x_pipeline(runners, model, task, index):
    case = GOLDEN["models"][model]["tasks"][task]["cases"][index]
    runner = runners(model, task)
    single = isinstance(case["inputs"], str)
    texts = [case["inputs"]] if single else case["inputs"]
    got = answer(runner, texts, **case["parameters"])
    assert got == case["expected"]


@pytest.mark.parametrize("model", list(GOLDEN["models"]))
def test_weights_load_identically_on_transformers_5(runners, model):
    probe = GOLDEN["models"][model]["probe"]
    runner = runners(model, "text2text-generation")
    ids = runner.task.tokenizer(probe["text"])["input_ids"]
    assert ids == probe["input_ids"]
    with torch.no_grad():
        logits = runner.model(input_ids=torch.tensor([ids]),
                              decoder_input_ids=torch.tensor([probe["decoder_input_ids"]])).logits
    assert torch.allclose(logits[0], torch.tensor(probe["logits"]), atol=1e-4)


def test_prefixes_from_task_specific_params(runners):
    recorded = GOLDEN["models"]["tiny-t5"]["tasks"]
    assert runners("tiny-t5", "summarization").task.prefix("summarization") == \
        recorded["summarization"]["prefix"] == "summarize: "
    translation = runners("tiny-t5", "translation").task
    key = translation.settings_key(Translation.parameters())
    assert key == recorded["translation"]["pipeline_task"] == "translation_en_to_de"
    assert translation.prefix(key) == "translate English to German: "
    fr = translation.settings_key(Translation.parameters(src_lang="en", tgt_lang="fr"))
    assert translation.prefix(fr) == "translate English to French: "
    assert runners("tiny-marian", "translation").task.prefix("translation") == ""
    assert runners("tiny-t5", "text2text-generation").task.prefix("text2text-generation") == ""


def test_src_lang_alone_is_rejected(runners):
    task = runners("tiny-t5", "translation").task
    with pytest.raises(InvalidInputError, match="parameters.tgt_lang"):
        task.prepare(["a"], Translation.parameters(src_lang="en"))


def test_batching_does_not_change_answers(runners):
    runner = runners("tiny-bart", "summarization")
    texts = ["the movie was good", "a", "hello world, the capital of France is Paris " * 3]
    alone = [answer(runner, [t], max_new_tokens=6)[0] for t in texts]
    assert answer(runner, texts, max_new_tokens=6) == alone


def test_requests_with_different_settings_get_their_own_answers(runners):
    runner = runners("tiny-bart", "text2text-generation")
    task = runner.task
    requests = [(task.prepare(["the movie"], p), p) for p in (
        Seq2SeqParameters(max_new_tokens=n, num_beams=1) for n in (1, 3, 5))]
    answers = task.generate(runner.model, requests)
    for (_sources, params), got in zip(requests, answers, strict=True):
        assert got == answer(runner, ["the movie"], max_new_tokens=params.max_new_tokens,
                             num_beams=1)
    assert len({a[0]["generated_text"] for a in answers}) > 1


def test_long_input_truncated_by_default_or_rejected(runners):
    task = runners("tiny-bart", "summarization").task
    long = "paris is a city and the capital of music. " * 40
    (source,) = task.prepare([long], Seq2SeqParameters())
    assert len(source.input_ids) == task.model_window == 64
    with pytest.raises(InputTooLongError, match="inputs has"):
        task.prepare([long], Seq2SeqParameters(truncation=False))


def test_lengths_beyond_the_decoder_window_are_rejected_by_name(runners):
    task = runners("tiny-bart", "text2text-generation").task
    for name in ("max_new_tokens", "max_length"):
        with pytest.raises(InvalidInputError, match=f"parameters.{name}"):
            task.prepare(["a"], Seq2SeqParameters(**{name: 500}))
    with pytest.raises(InvalidInputError, match="parameters.min_length"):
        task.prepare(["a"], Seq2SeqParameters(min_length=30, max_new_tokens=5))
    # T5 has relative positions: no decoder window
    t5 = runners("tiny-t5", "text2text-generation").task
    assert t5.prepare(["a"], Seq2SeqParameters(max_new_tokens=500))


def test_default_settings_mirror_the_pipeline(runners):
    t5 = runners("tiny-t5", "summarization").task
    (source,) = t5.prepare(["a"], Seq2SeqParameters())
    config = t5.generation_config(source, Seq2SeqParameters())
    assert (config.max_length, config.num_beams, config.no_repeat_ngram_size) == (16, 2, 3)
    t5 = runners("tiny-t5", "translation").task
    (source,) = t5.prepare(["a"], Translation.parameters())
    config = t5.generation_config(source, Translation.parameters())
    # task_specific_params' max_length 20 is the 4.x global default: the model's 24 wins
    assert (config.max_length, config.num_beams) == (24, 2)
    marian = runners("tiny-marian", "text2text-generation").task
    (source,) = marian.prepare(["a"], Seq2SeqParameters())
    config = marian.generation_config(source, Seq2SeqParameters())
    assert (config.max_new_tokens, config.max_length, config.num_beams) == (None, 24, 2)
    nulls = marian.generation_config(source, Seq2SeqParameters(do_sample=None, num_beams=None))
    assert (nulls.do_sample, nulls.num_beams) == (config.do_sample, 2)  # null: the default
    explicit = marian.generation_config(source, Seq2SeqParameters(max_length=5))
    assert (explicit.max_new_tokens, explicit.max_length) == (None, 5)


def test_seeded_sampling_is_reproducible(runners):
    runner = runners("tiny-t5", "text2text-generation")
    params = {"do_sample": True, "seed": 7, "max_new_tokens": 6, "top_k": 20}
    assert answer(runner, ["the movie", "a"], **params) == \
        answer(runner, ["the movie", "a"], **params)


def test_format_mirrors_the_pipeline():
    inputs_one = Summarization.parse_inputs("a", 4)
    assert Summarization.format([{"summary_text": "x"}], inputs_one) == [{"summary_text": "x"}]
    inputs_two = Summarization.parse_inputs(["a", "b"], 4)
    assert Summarization.format([{"summary_text": "x"}, {"summary_text": "y"}], inputs_two) \
        == [{"summary_text": "x"}, {"summary_text": "y"}]


@pytest.mark.parametrize("parameters", [
    {"max_new_tokens": 0}, {"max_new_tokens": 100_000}, {"max_length": 10**6},
    {"min_length": -1}, {"num_beams": 0}, {"num_beams": 64}, {"temperature": 0},
    {"top_p": 1.5}, {"top_k": 0}, {"repetition_penalty": 0}, {"seed": -1}, {"unknown": 1},
    {"stream": True}, {"return_full_text": False},
])
def test_invalid_parameters_are_rejected_by_name(parameters):
    with pytest.raises(ValidationError) as error:
        Seq2SeqParameters(**parameters)
    assert next(iter(parameters)) in str(error.value)


@pytest.mark.parametrize("parameters", [{"src_lang": ""}, {"tgt_lang": "x" * 40},
                                        {"src_lang": "en de"}])
def test_invalid_languages_are_rejected_by_name(parameters):
    with pytest.raises(ValidationError) as error:
        Translation.parameters(**parameters)
    assert next(iter(parameters)) in str(error.value)
    with pytest.raises(ValidationError):
        Seq2SeqParameters(src_lang="en")  # only translation takes languages


@pytest.mark.parametrize(("model", "task"), [("tiny-t5", "summarization"),
                                             ("tiny-bart", "summarization"),
                                             ("tiny-marian", "translation")])
def test_greedy_streams_end_with_the_answer(runners, model, task):
    runner = runners(model, task)
    params = runner.task.parameters(num_beams=1, max_new_tokens=10)
    (source,) = runner.task.prepare(["the movie was great and the cat sat"], params)
    events: list[dict] = []
    runner.task.stream(runner.model, source, params, events.append)
    (expected,) = answer(runner, ["the movie was great and the cat sat"], num_beams=1,
                         max_new_tokens=10)
    assert 1 < len(events) <= 10
    assert events[-1]["generated_text"] == runner.task.format([expected], None)[0][
        runner.task.answer_key]
    with pytest.raises(InvalidInputError, match="num_beams"):
        runner.task.stream(runner.model, source, runner.task.parameters(), events.append)
