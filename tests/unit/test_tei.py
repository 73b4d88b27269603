"""TEI request/answer translation (serving/tei.py), without Ray."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from serving.errors import (
    InputTooLongError,
    InvalidInputError,
    WrongModelKindError,
    describe_validation_errors,
)
from serving.schemas.tei import (
    TeiDecodeRequest,
    TeiEmbedRequest,
    TeiPredictRequest,
    TeiRerankRequest,
)
from serving.tei import (
    INFERENCE_API,
    check_route,
    main_route,
    model_type,
    predict_answer,
    predict_requests,
    rerank_answer,
    rerank_request,
    root_route,
    tokens_answer,
)
from serving.tei_inputs import decode_inputs, embed_inputs
from serving.tokenization import TextTokenizer


@pytest.mark.parametrize(("inputs", "expected", "single"), [
    ("a", [["a"]], True),
    (["a"], [["a"]], True),
    (["a", "b"], [[{"text": "a", "text_pair": "b"}]], True),
    ([["a"], ["b"]], [["a", "b"]], False),
])
def test_predict_inputs(inputs, expected, single):
    requests, _, is_single = predict_requests(TeiPredictRequest(inputs=inputs))
    assert [[i if isinstance(i, str) else i.model_dump() for i in r.inputs]
            for r in requests] == expected
    assert is_single is single


def test_a_mixed_batch_runs_as_two_requests_and_keeps_its_order():
    body = TeiPredictRequest(inputs=[["a"], ["b", "c"], ["d"]], raw_scores=True,
                             truncate=False)
    requests, inputs, single = predict_requests(body)
    assert inputs == [[0, 2], [1]] and not single
    assert all(r.parameters == {"function_to_apply": "none", "truncation": False}
               for r in requests)
    assert predict_answer([["A", "D"], ["BC"]], inputs, single) == ["A", "BC", "D"]


def test_a_sequence_has_one_or_two_texts():
    with pytest.raises(InvalidInputError, match=r"inputs\[0\].*3 strings"):
        predict_requests(TeiPredictRequest(inputs=[["a", "b", "c"]]))


def test_cross_encoder_rerank_sorts_and_needs_one_label():
    body = TeiRerankRequest(query="q", texts=["x", "y"], return_text=True)
    request = rerank_request(body, "text-classification")
    assert [pair.model_dump() for pair in request.inputs] == [
        {"text": "q", "text_pair": "x"}, {"text": "q", "text_pair": "y"}]
    answer = [[{"label": "LABEL_0", "score": 0.2}], [{"label": "LABEL_0", "score": 0.9}]]
    assert rerank_answer(answer, body, "text-classification") == [
        {"index": 1, "score": 0.9, "text": "y"}, {"index": 0, "score": 0.2, "text": "x"}]
    two_labels = [[{"label": "a", "score": 0.5}, {"label": "b", "score": 0.5}]]
    with pytest.raises(WrongModelKindError, match="2 labels"):  # TEI: 424, not 422
        rerank_answer(two_labels, body, "text-classification")


def test_routes_name_the_task_they_need():
    check_route("embed", "minilm", "feature-extraction")
    with pytest.raises(WrongModelKindError, match="'gpt2' is a text-generation model"):
        check_route("tokenize", "gpt2", "text-generation")


def test_model_type_as_tei_reports_it():
    assert model_type("feature-extraction", {"pooling": "mean"}) == {
        "embedding": {"pooling": "mean"}}
    assert model_type("text-classification", {"id2label": {0: "NEG", 1: "POS"}}) == {
        "classifier": {"id2label": {"0": "NEG", "1": "POS"}, "label2id": {"NEG": 0, "POS": 1}}}
    assert model_type("text-classification", {"id2label": {0: "LABEL_0"}}) == {
        "reranker": {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}}
    # An embedding model's cosine-ranking view: TEI's reranker shape, with one label.
    assert model_type("text-ranking", {"pooling": "mean"}) == {
        "reranker": {"id2label": {"0": "score"}, "label2id": {"score": 0}}}
    assert model_type("feature-extraction", {"pooling": "lasttoken"}) == {
        "embedding": {"pooling": "last_token"}}  # TEI's spelling
    assert model_type("feature-extraction", {}) == {"embedding": {"pooling": None}}


def test_tokenize_offsets_are_utf8_bytes_by_default(minilm_dir):
    """TEI's /tokenize counts offsets in UTF-8 bytes (Rust tokenizers' offsets); ``offsets:
    chars`` keeps Python's character offsets. Both slice the input to each token's text."""
    texts = ["Héllo wörld, 日本 🙂 ok", "plain ascii"]
    details = TextTokenizer.load(str(minilm_dir)).token_details(texts)
    in_bytes, in_chars = tokens_answer(details, "bytes"), tokens_answer(details, "chars")
    assert [t["id"] for t in in_bytes[0]] == [t["id"] for t in in_chars[0]]
    for text, tokens in zip(texts, in_bytes, strict=True):
        assert set(tokens[0]) == {"id", "text", "special", "start", "stop"}
        assert tokens[0]["special"] and tokens[0]["start"] is tokens[0]["stop"] is None
        words = [t for t in tokens if not t["special"]]
        assert words and all(text.encode()[t["start"]:t["stop"]].decode() == t["text"]
                             for t in words)
    for text, tokens in zip(texts, in_chars, strict=True):
        assert all(text[t["start"]:t["stop"]] == t["text"] for t in tokens if not t["special"])
    # Multi-byte characters move the byte offsets past the character offsets.
    last_bytes, last_chars = in_bytes[0][-2], in_chars[0][-2]
    assert last_bytes["text"] == last_chars["text"] == "ok"
    assert last_bytes["start"] - last_chars["start"] == len(texts[0].encode()) - len(texts[0])
    spans = {t["text"]: (t["start"], t["stop"]) for t in in_bytes[0] if not t["special"]}
    assert spans["Héllo"] == (0, 6) and spans["日"] == (15, 18) and spans["🙂"] == (22, 26)
    assert in_bytes[1] == in_chars[1]  # ASCII: bytes are characters


# --- POST / and /invocations, token-id inputs, /decode ------------------------------------


def test_the_root_route_follows_the_model_kind():
    """TEI's router/src/http/server.rs: `/` and `/invocations` are the model kind's route."""
    assert main_route(model_type("feature-extraction", {"pooling": "mean"})) == "embed"
    assert main_route({"embedding": {"pooling": "splade"}}) == "embed_sparse"
    assert main_route(model_type("text-classification", {"id2label": {0: "a", 1: "b"}})) == (
        "predict")
    assert main_route(model_type("text-classification", {"id2label": {0: "LABEL_0"}})) == (
        "rerank")
    assert main_route(model_type("text-ranking", {"pooling": "mean"})) == "rerank"
    assert main_route(model_type("token-classification", {})) is None


def test_the_root_takes_what_inference_client_posts():
    # huggingface_hub's InferenceClient(base_url=...) posts these to the server's root.
    assert root_route("embed", {"inputs": "hi", "normalize": True, "truncate": True}) == "embed"
    similarity = {"inputs": {"source_sentence": "a", "sentences": ["b"]}, "parameters": {}}
    assert root_route("embed", similarity) == "similarity"
    assert root_route("predict", {"inputs": "a", "parameters": {}}) == INFERENCE_API
    assert root_route("predict", {"inputs": "a", "raw_scores": True}) == "predict"
    assert root_route("rerank", {"query": "q", "texts": ["a"]}) == "rerank"
    assert root_route("embed", ["not", "an", "object"]) == "embed"  # its route says why


def test_embed_inputs_mix_texts_and_token_ids():
    parts = embed_inputs(TeiEmbedRequest(inputs=["a", [7, 8], "b", [9]]), 8)
    assert (parts.texts, parts.text_places) == (["a", "b"], [0, 2])
    assert (parts.ids, parts.id_places, parts.id_names) == ([[7, 8], [9]], [1, 3],
                                                            ["inputs[1]", "inputs[3]"])
    assert parts.merged(["A", "B"], ["X", "Y"]) == ["A", "X", "B", "Y"]
    decoded = parts.with_ids_as_texts(["x", "y"])
    assert (decoded.texts, decoded.text_places, decoded.ids) == (["a", "x", "b", "y"],
                                                                [0, 1, 2, 3], [])
    one = embed_inputs(TeiEmbedRequest(inputs=[101, 7592, 102]), 8)
    assert (one.texts, one.ids, one.id_names) == ([], [[101, 7592, 102]], ["inputs"])
    assert embed_inputs(TeiEmbedRequest(inputs="a"), 8).texts == ["a"]


@pytest.mark.parametrize(("inputs", "named"), [
    ([], "inputs is an empty list"),
    (["a", []], r"inputs\[1\] is an empty list of token ids"),
    (["a", " "], r"inputs\[1\] is empty"),
    ([[1]] * 9, "more than the limit of 8"),
])
def test_embed_inputs_name_the_bad_input(inputs, named):
    with pytest.raises(InvalidInputError, match=named):
        embed_inputs(TeiEmbedRequest(inputs=inputs), 8)


def test_decode_inputs():
    assert decode_inputs(TeiDecodeRequest(ids=[1, 2]), 4) == ([[1, 2]], ["ids"])
    assert decode_inputs(TeiDecodeRequest(ids=[[1], [2]]), 4) == ([[1], [2]],
                                                                 ["ids[0]", "ids[1]"])
    for ids, named in [([], "ids is an empty list"), ([[1], []], r"ids\[1\] is an empty"),
                       ([[1]] * 5, "more than the limit of 4")]:
        with pytest.raises(InvalidInputError, match=named):
            decode_inputs(TeiDecodeRequest(ids=ids), 4)


@pytest.mark.parametrize(("schema", "body", "named"), [
    (TeiEmbedRequest, {"inputs": 5}, "inputs: must be a string, a list of token ids"),
    (TeiEmbedRequest, {"inputs": ["a", 1.5]}, "inputs: must be a string, a list of token ids"),
    (TeiEmbedRequest, {"inputs": [True]}, "inputs: must be a string, a list of token ids"),
    (TeiDecodeRequest, {"ids": ["a"]}, "ids: must be a list of token ids"),
    (TeiDecodeRequest, {"ids": [1], "extra": 1}, "extra"),
])
def test_tei_id_bodies_say_what_they_take(schema, body, named):
    with pytest.raises(ValidationError) as failure:
        schema.model_validate(body)
    assert describe_validation_errors(failure.value.errors()).startswith(named)


def test_token_ids_as_given_and_decoded(minilm_dir):
    """TEI embeds token ids as given (core/src/tokenization.rs: decoded, then encoded back
    without special tokens) and decodes with the Rust tokenizer."""
    from tokenizers import Tokenizer

    tokenizer = TextTokenizer.load(str(minilm_dir))
    texts = ["Héllo wörld, Ray Serve!", "don't stop " * 200]
    by_text = tokenizer.encode(texts)
    ids = [row.tolist() for row in np.split(by_text.input_ids, np.cumsum(by_text.lengths)[:-1])]
    as_given = tokenizer.encode_ids(ids, add_special_tokens=False)
    assert as_given.input_ids.tolist() == by_text.input_ids.tolist()
    assert tokenizer.encode_ids(ids).lengths.tolist() == [len(ids[0]) + 2, tokenizer.max_length]
    long = ids[1] * 2  # 2 × the window: left truncation keeps the end
    kept = tokenizer.encode_ids([long], add_special_tokens=False, truncation_side="left")
    assert kept.input_ids.tolist() == long[-tokenizer.max_length:]
    with pytest.raises(InputTooLongError, match=r"inputs\[3\] has"):
        tokenizer.encode_ids([long], truncate=False, add_special_tokens=False,
                             names=["inputs[3]"])
    with pytest.raises(InvalidInputError, match=r"inputs\[2\]: token id 30522 is not in"):
        tokenizer.encode_ids([[101, 30522]], names=["inputs[2]"])
    rust = Tokenizer.from_file(str(minilm_dir / "tokenizer.json"))
    for skip in (True, False):
        assert tokenizer.decode(ids, skip) == rust.decode_batch(ids, skip_special_tokens=skip)
    assert tokenizer.decode(ids[:1]) == ["hello world, ray serve!"]
    with pytest.raises(InvalidInputError, match=r"ids\[1\]: token id -1"):
        tokenizer.decode([[101], [-1]])
