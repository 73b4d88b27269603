"""Hugging Face's ``huggingface_hub.InferenceClient``, unchanged, against the session app.

``InferenceClient(model=".../models/NAME")`` POSTs the Inference API payload straight to
that URL and parses the answers into its typed outputs; each test checks the typed result
and, where it can, that it equals what our own route answers to the same request.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.errors import ValidationError as TextGenerationValidationError
from huggingface_hub.inference._generated.types import (
    FillMaskOutputElement,
    QuestionAnsweringOutputElement,
    SummarizationOutput,
    TextClassificationOutputElement,
    TokenClassificationOutputElement,
    TranslationOutput,
    ZeroShotClassificationOutputElement,
)

TEXTS = ["Ray Serve batches requests.", "A man is eating food.", "café 東京 🙂"]
SECRET = "hf_secretTOKEN0123456789abcdefDoNotLog"


# huggingface_hub's client may call our server although the Hub is off (conftest).
pytestmark = pytest.mark.usefixtures("hf_client_online")


@pytest.fixture(scope="module")
def client(served_app):
    def make(name: str, **kwargs) -> InferenceClient:
        return InferenceClient(model=f"{served_app}/models/{name}", timeout=60, **kwargs)

    return make


def _ours(http, name, payload):
    response = http.post(f"/models/{name}", json=payload)
    assert response.status_code == 200, response.text
    return response.json()


def _refused(call, status: int, mentions: str) -> None:
    with pytest.raises(HfHubHTTPError) as failure:
        call()
    assert failure.value.response.status_code == status
    body = failure.value.response.json()
    assert set(body) == {"error", "error_type"} and mentions in body["error"], body


def test_text_classification(client, http):
    answer = client("sentiment").text_classification("I love this movie!", top_k=2)
    assert all(isinstance(item, TextClassificationOutputElement) for item in answer)
    assert {item.label for item in answer} == {"POSITIVE", "NEGATIVE"}
    assert answer[0].score >= answer[1].score
    ours = _ours(http, "sentiment", {"inputs": "I love this movie!"})[0]
    assert [item.label for item in answer] == [item["label"] for item in ours]
    assert np.allclose([item.score for item in answer], [item["score"] for item in ours])
    sigmoid = client("sentiment").text_classification("I love it", function_to_apply="sigmoid")
    assert len(sigmoid) == 2 and all(0 < item.score < 1 for item in sigmoid)


def test_token_classification(client, http):
    text = "My name is Sylvain and I work at Hugging Face in Brooklyn."
    entities = client("ner").token_classification(text, aggregation_strategy="simple")
    assert all(isinstance(e, TokenClassificationOutputElement) for e in entities)
    for entity in entities:
        assert entity.entity_group and 0 <= entity.start < entity.end <= len(text)
        assert isinstance(entity.score, float)
    ours = _ours(http, "ner", {"inputs": text, "parameters": {"aggregation_strategy": "simple"}})
    assert [(e.entity_group, e.start, e.end, e.word) for e in entities] == [
        (e["entity_group"], e["start"], e["end"], e["word"]) for e in ours
    ]
    tokens = client("ner").token_classification(text, ignore_labels=[])
    assert tokens and all(text[e.start:e.end] and e.entity for e in tokens)


def test_token_classification_stride_is_refused_by_name(client):
    _refused(lambda: client("ner").token_classification("hello there", stride=4), 422,
             "stride")


def test_question_answering(client):
    context = "My name is Wolfgang and I live in Berlin."
    answer = client("qa").question_answering("Where do I live?", context)
    assert isinstance(answer, QuestionAnsweringOutputElement)
    assert answer.answer == context[answer.start:answer.end]
    several = client("qa").question_answering("Where do I live?", context, top_k=2,
                                               max_answer_len=5, align_to_words=False)
    assert isinstance(several, list) and len(several) == 2
    assert all(item.answer == context[item.start:item.end] for item in several)


def test_zero_shot_classification(client, http):
    labels = ["sports", "politics", "cooking"]
    text = "The team won the championship game last night."
    answer = client("zero-shot").zero_shot_classification(text, labels)
    assert all(isinstance(item, ZeroShotClassificationOutputElement) for item in answer)
    assert sorted(item.label for item in answer) == sorted(labels)
    assert abs(sum(item.score for item in answer) - 1) < 1e-4
    ours = _ours(http, "zero-shot", {"inputs": text, "parameters": {"candidate_labels": labels}})
    assert [item.label for item in answer] == ours["labels"]  # plain clients keep the dict
    multi = client("zero-shot").zero_shot_classification(
        text, labels, multi_label=True, hypothesis_template="This text is about {}."
    )
    assert sorted(item.label for item in multi) == sorted(labels)
    view = client("minilm-zero-shot").zero_shot_classification(text, labels)
    assert view[0].label == "sports"


def test_summarization(client, http):
    text = "Ray Serve is a scalable model serving library. It runs on a Ray cluster."
    answer = client("bart-summarize").summarization(
        text, generate_parameters={"max_new_tokens": 8, "num_beams": 1},
        truncation="longest_first", clean_up_tokenization_spaces=False,
    )
    assert isinstance(answer, SummarizationOutput) and isinstance(answer.summary_text, str)
    ours = _ours(http, "bart-summarize",
                 {"inputs": text, "parameters": {"max_new_tokens": 8, "num_beams": 1}})
    assert answer.summary_text == ours[0]["summary_text"]


def test_summarization_unknown_generate_parameter_is_refused_by_name(client):
    _refused(lambda: client("bart-summarize").summarization(
        "Some text.", generate_parameters={"early_stopping": True}), 422,
        "generate_parameters.early_stopping")


def test_translation(client, http):
    text = "How old are you?"
    answer = client("marian-translate").translation(
        text, generate_parameters={"max_new_tokens": 8}, truncation="do_not_truncate"
    )
    assert isinstance(answer, TranslationOutput) and isinstance(answer.translation_text, str)
    ours = _ours(http, "marian-translate", {"inputs": text, "parameters": {"max_new_tokens": 8}})
    assert answer.translation_text == ours[0]["translation_text"]
    t5 = client("t5-translate").translation(text, src_lang="English", tgt_lang="German",
                                            generate_parameters={"max_new_tokens": 4})
    assert isinstance(t5.translation_text, str)


def test_text_generation(client, http):
    prompt = "Hello, my name is"
    answer = client("gpt2").text_generation(prompt, max_new_tokens=5)
    assert isinstance(answer, str)
    ours = _ours(http, "gpt2", {"inputs": prompt, "parameters": {"max_new_tokens": 5}})
    assert answer == ours[0]["generated_text"]


def test_text_generation_streams(client):
    prompt = "Hello, my name is"
    gpt2 = client("gpt2")  # keep it: the stream closes with the client
    whole = gpt2.text_generation(prompt, max_new_tokens=6, return_full_text=False)
    tokens = list(gpt2.text_generation(prompt, max_new_tokens=6, return_full_text=False,
                                       stream=True))
    assert all(isinstance(token, str) for token in tokens) and "".join(tokens) == whole


@pytest.mark.parametrize("stream", [False, True])
def test_text_generation_details_and_unsupported_parameters(client, stream):
    gpt2 = client("gpt2")  # keep it: the stream closes with the client
    answer = gpt2.text_generation("Hi", max_new_tokens=2, details=True, stream=stream)
    details = list(answer)[-1].details if stream else answer.details
    assert details.finish_reason in ("length", "eos_token") and details.generated_tokens <= 2
    # The client raises TGI's typed error for our {"error", "error_type": "validation"}.
    with pytest.raises(TextGenerationValidationError, match="watermark"):
        client("gpt2").text_generation("Hi", max_new_tokens=2, watermark=True)


def test_fill_mask(client, http):
    answer = client("fill-mask").fill_mask("the movie was [MASK].", top_k=3)
    assert len(answer) == 3 and all(isinstance(item, FillMaskOutputElement) for item in answer)
    assert all(isinstance(item.token_str, str) and item.sequence for item in answer)
    ours = _ours(http, "fill-mask", {"inputs": "the movie was [MASK].",
                                     "parameters": {"top_k": 3}})
    assert [item.token_str for item in answer] == [item["token_str"] for item in ours]
    targeted = client("fill-mask").fill_mask("the movie was [MASK].", targets=["good", "bad"])
    assert {item.token_str for item in targeted} <= {"good", "bad"}


def test_feature_extraction(client, http):
    vectors = client("minilm").feature_extraction(TEXTS)
    assert isinstance(vectors, np.ndarray) and vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, _ours(http, "minilm", {"inputs": TEXTS}), atol=1e-6)
    one = client("minilm").feature_extraction(TEXTS[0])
    assert one.shape == (384,)
    np.testing.assert_allclose(one, vectors[0], atol=1e-5)


def test_feature_extraction_prompt_and_left_truncation(client, http):
    long = "Ray Serve starts here. " + "filler words " * 200 + "It ends here."
    left = client("minilm").feature_extraction(long, truncation_direction="left")
    ours = _ours(http, "minilm", {"inputs": long,
                                  "parameters": {"truncation_direction": "left"}})
    np.testing.assert_allclose(left, ours, atol=1e-6)
    assert not np.allclose(left, client("minilm").feature_extraction(long), atol=1e-2)
    query = client("tiny-st-prompts").feature_extraction(TEXTS[0], prompt_name="query")
    named = _ours(http, "tiny-st-prompts", {"inputs": TEXTS[0],
                                            "parameters": {"prompt_name": "query"}})
    np.testing.assert_allclose(query, named, atol=1e-6)
    default = client("tiny-st-prompts").feature_extraction(TEXTS[0])  # "document" prompt
    assert not np.allclose(query, default, atol=1e-3)


def test_feature_extraction_top_level_options(client, http):
    raw = client("minilm").feature_extraction(TEXTS[0], normalize=False, truncate=True,
                                              truncation_direction="right")
    ours = _ours(http, "minilm", {"inputs": TEXTS[0], "parameters": {"normalize": False}})
    np.testing.assert_allclose(raw, ours, atol=1e-6)
    assert abs(np.linalg.norm(raw) - 1) > 1e-3
    # dimensions: only for a model configured as Matryoshka-trained (not all-MiniLM-L6-v2).
    short = client("tiny-st-colocated").feature_extraction(TEXTS[:2], dimensions=8)
    full = np.array(_ours(http, "tiny-st-colocated", {"inputs": TEXTS[:2]}))[:, :8]
    assert short.shape == (2, 8)
    np.testing.assert_allclose(short, full / np.linalg.norm(full, axis=1, keepdims=True),
                               atol=1e-5)


@pytest.mark.parametrize(("kwargs", "status", "mentions"), [
    ({"prompt_name": "query"}, 422, "prompt_name"),  # all-MiniLM-L6-v2 has no prompts
    ({"encoding_format": "base64"}, 422, "encoding_format"),
    ({"dimensions": 4096}, 422, "dimensions"),
])
def test_feature_extraction_unsupported_options_are_refused_by_name(client, kwargs, status,
                                                                    mentions):
    _refused(lambda: client("minilm").feature_extraction("hello", **kwargs), status, mentions)


def test_feature_extraction_truncate_false_refuses_long_inputs(client):
    _refused(lambda: client("tiny-st").feature_extraction("hello world " * 200, truncate=False),
             422, "limit of 48")


def test_sentence_similarity(client, http):
    source, others = "A man is eating food.", ["A man eats something.", "The sky is blue."]
    scores = client("minilm").sentence_similarity(source, others)
    assert isinstance(scores, list) and all(isinstance(score, float) for score in scores)
    ours = _ours(http, "minilm", {"inputs": {"source_sentence": source, "sentences": others}})
    assert np.allclose(scores, ours, atol=1e-6) and scores[0] > scores[1]


def _session_logs() -> list[Path]:
    import ray

    node = ray._private.worker._global_node  # this test session's own Ray instance
    if node is None:
        return []
    return [path for path in Path(node.get_session_dir_path(), "logs").rglob("*")
            if path.is_file()]


def test_bearer_token_is_accepted_and_never_logged(client, http):
    vectors = client("minilm", token=SECRET).feature_extraction(TEXTS[0])
    assert vectors.shape == (384,)
    response = http.post("/models/sentiment", json={"inputs": "fine"},
                         headers={"Authorization": f"Bearer {SECRET}"})
    assert response.status_code == 200
    bad = http.post("/models/sentiment", json={"inputs": ""},
                    headers={"Authorization": f"Bearer {SECRET}"})
    assert bad.status_code == 422 and SECRET not in bad.text
    logs = _session_logs()
    if not logs:
        pytest.skip("no Ray session logs found")
    leaked = [str(path) for path in logs if SECRET.encode() in path.read_bytes()]
    assert not leaked
