"""Unit tests of serving.tokenization: the compact EncodedInputs layout, padding, the
model window, truncation and text pairs, checked against the Hugging Face tokenizer."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from transformers import AutoTokenizer

from serving.batching import EncodedInputs, length_buckets, pad_batch
from serving.errors import InputTooLongError, InvalidInputError
from serving.tokenization import TextTokenizer

LONG_TEXT = "the movie was really great and i love it " * 20  # ~180 tokens
TEXTS = ["hello world", "a", "the film is not very good, but i like it", "ray serve"]


@pytest.fixture(scope="module")
def st_tokenizer(model_dirs) -> TextTokenizer:
    return TextTokenizer.load(str(model_dirs["st"]))


@pytest.fixture(scope="module")
def encoder_tokenizer(model_dirs) -> TextTokenizer:
    return TextTokenizer.load(str(model_dirs["encoder"]))


@pytest.fixture(scope="module")
def hf_tokenizer(model_dirs):
    return AutoTokenizer.from_pretrained(str(model_dirs["encoder"]))


def _encoded(with_types: bool = True) -> EncodedInputs:
    rows = [[2, 10, 11, 3], [2, 3], [2, 12, 13, 14, 15, 3], [2, 16, 3]]
    types = [[0, 0, 1, 1], [0, 0], [0, 0, 0, 1, 1, 1], [0, 1, 1]]
    ids = np.array([t for row in rows for t in row], dtype=np.int32)
    lengths = np.array([len(row) for row in rows], dtype=np.int32)
    token_types = np.array([t for row in types for t in row], dtype=np.int8) if with_types else None
    return EncodedInputs(ids, lengths, token_types, pad_token_id=0), rows, types


@pytest.mark.parametrize("with_types", [True, False])
def test_rows_round_trip(with_types):
    encoded, rows, types = _encoded(with_types)
    assert len(encoded) == 4 and encoded.num_tokens == sum(map(len, rows))
    got = encoded.rows()
    assert [ids.tolist() for ids, _ in got] == rows
    if with_types:
        assert [t.tolist() for _, t in got] == types
    else:
        assert all(t is None for _, t in got)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 100])
@pytest.mark.parametrize("with_types", [True, False])
def test_chunks_preserve_every_text_in_order(size, with_types):
    encoded, rows, types = _encoded(with_types)
    chunks = encoded.chunks(size)
    assert len(chunks) == -(-len(rows) // size)
    assert all(1 <= len(chunk) <= size for chunk in chunks)
    flat = [row for chunk in chunks for row in chunk.rows()]
    assert [ids.tolist() for ids, _ in flat] == rows
    if with_types:
        assert [t.tolist() for _, t in flat] == types
    assert all(chunk.pad_token_id == 0 for chunk in chunks)
    assert sum(chunk.num_tokens for chunk in chunks) == encoded.num_tokens


def test_pad_batch_shapes_and_masks():
    encoded, rows, types = _encoded()
    batch = pad_batch(encoded.rows(), pad_token_id=7)
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids"}
    assert batch["input_ids"].shape == (4, 6)
    for i, row in enumerate(rows):
        n = len(row)
        assert batch["input_ids"][i, :n].tolist() == row
        assert (batch["input_ids"][i, n:] == 7).all()
        assert batch["attention_mask"][i].tolist() == [1] * n + [0] * (6 - n)
        assert batch["token_type_ids"][i].tolist() == types[i] + [0] * (6 - n)
    assert all(array.dtype == np.int64 for array in batch.values())


@pytest.mark.parametrize(
    ("lengths", "groups"),
    [
        ([10, 12, 128, 9, 11], [[3, 0, 4, 1], [2]]),
        ([5, 10, 11, 21], [[0, 1], [2, 3]]),
        ([7, 7, 7], [[0, 1, 2]]),
        ([3], [[0]]),
        ([], []),
    ],
)
def test_length_buckets(lengths, groups):
    assert length_buckets(lengths) == groups
    assert sorted(i for group in groups for i in group) == list(range(len(lengths)))


def test_pad_batch_without_token_types():
    encoded, _, _ = _encoded(with_types=False)
    batch = pad_batch(encoded.rows(), pad_token_id=0)
    assert set(batch) == {"input_ids", "attention_mask"}
    assert batch["attention_mask"].sum() == encoded.num_tokens


def test_window_from_sentence_transformers_config(st_tokenizer, encoder_tokenizer):
    assert st_tokenizer.max_length == 48  # sentence_bert_config.json max_seq_length
    assert encoder_tokenizer.max_length == 64  # model_max_length / max_position_embeddings


def test_window_capped_by_max_input_tokens(model_dirs):
    assert TextTokenizer.load(str(model_dirs["encoder"]), max_input_tokens=16).max_length == 16
    assert TextTokenizer.load(str(model_dirs["st"]), max_input_tokens=1000).max_length == 48


def test_minilm_window(minilm_dir):
    assert TextTokenizer.load(str(minilm_dir)).max_length == 256


@pytest.mark.parametrize("which", ["st", "encoder"])
def test_encode_matches_hf_tokenizer_and_truncates(which, st_tokenizer, encoder_tokenizer,
                                                   hf_tokenizer):
    tokenizer = st_tokenizer if which == "st" else encoder_tokenizer
    texts = [*TEXTS, LONG_TEXT]
    encoded = tokenizer.encode(texts)
    expected = hf_tokenizer(texts, truncation=True, max_length=tokenizer.max_length)
    assert [ids.tolist() for ids, _ in encoded.rows()] == expected["input_ids"]
    assert [t.tolist() for _, t in encoded.rows()] == expected["token_type_ids"]
    assert encoded.lengths[-1] == tokenizer.max_length
    assert encoded.input_ids.dtype == np.int32
    assert encoded.lengths.dtype == np.int32
    assert encoded.token_type_ids.dtype == np.int8
    assert encoded.pad_token_id == hf_tokenizer.pad_token_id


def test_no_truncation_rejects_too_long_input(st_tokenizer):
    with pytest.raises(InputTooLongError) as info:
        st_tokenizer.encode(["hello", "world", LONG_TEXT], truncate=False)
    assert "inputs[2]" in str(info.value)
    assert "48" in str(info.value)


def test_no_truncation_accepts_short_inputs(st_tokenizer, hf_tokenizer):
    encoded = st_tokenizer.encode(TEXTS, truncate=False)
    assert [ids.tolist() for ids, _ in encoded.rows()] == hf_tokenizer(TEXTS)["input_ids"]


def test_text_pairs_token_types(encoder_tokenizer, hf_tokenizer):
    texts, pairs = ["a man is eating", "hello"], ["someone eats food", "world is great"]
    encoded = encoder_tokenizer.encode(texts, pairs)
    expected = hf_tokenizer(texts, pairs, truncation=True, max_length=64)
    assert [ids.tolist() for ids, _ in encoded.rows()] == expected["input_ids"]
    assert [t.tolist() for _, t in encoded.rows()] == expected["token_type_ids"]
    assert all(1 in t for t in expected["token_type_ids"])  # second segments are typed 1


def test_distilbert_has_no_token_types(model_dirs):
    tokenizer = TextTokenizer.load(str(model_dirs["sst2"]))
    encoded = tokenizer.encode(["hello"], ["world"])
    assert encoded.token_type_ids is None
    assert encoded.input_ids.dtype == np.int32


def test_count_tokens(encoder_tokenizer, hf_tokenizer):
    counts = encoder_tokenizer.count_tokens([TEXTS[0], LONG_TEXT])
    assert counts == [len(ids) for ids in hf_tokenizer([TEXTS[0], LONG_TEXT])["input_ids"]]
    assert counts[1] > 64


def test_concurrent_encodes_keep_their_own_settings(encoder_tokenizer):
    """Ray Serve runs sync methods in a thread pool: encodes with different windows and
    truncation at once must each get their own settings (fast tokenizers keep them on the
    shared Rust object; without the lock this mixed windows and raised truncation errors)."""
    context = " ".join(f"paris is a city and the capital of music {i}." for i in range(40))
    calls = [
        lambda: encoder_tokenizer.encode(["which city?"], [context], windows=[(48, 16)],
                                         with_offsets=True),
        lambda: encoder_tokenizer.encode(["where?"], [context], windows=[(64, 8)],
                                         with_offsets=True),
        lambda: encoder_tokenizer.encode([LONG_TEXT, "hello"], truncate=True),
        lambda: encoder_tokenizer.encode(TEXTS, truncate=False),
        lambda: encoder_tokenizer.count_tokens([context, LONG_TEXT]),
    ]

    def key(result):
        if isinstance(result, EncodedInputs):
            owners = result.owners.tobytes() if result.owners is not None else b""
            return result.input_ids.tobytes(), result.lengths.tobytes(), owners
        return result

    expected = [key(call()) for call in calls]
    with ThreadPoolExecutor(8) as pool:
        futures = [(i, pool.submit(calls[i])) for i in list(range(len(calls))) * 60]
        got = [(i, key(future.result())) for i, future in futures]
    assert all(result == expected[i] for i, result in got)


def test_token_ids_are_framed_and_cut_like_text(encoder_tokenizer, hf_tokenizer):
    texts = ["hello world", LONG_TEXT]
    ids = hf_tokenizer(texts, add_special_tokens=False)["input_ids"]
    by_ids, by_text = encoder_tokenizer.encode_ids(ids), encoder_tokenizer.encode(texts)
    assert by_ids.input_ids.tolist() == by_text.input_ids.tolist()
    assert by_ids.lengths.tolist() == by_text.lengths.tolist()
    assert by_ids.token_type_ids.tolist() == by_text.token_type_ids.tolist()
    with pytest.raises(InputTooLongError, match=r"input\[1\]"):
        encoder_tokenizer.encode_ids(ids, truncate=False)
    with pytest.raises(InvalidInputError, match=r"input\[0\]: token id -1"):
        encoder_tokenizer.encode_ids([[5, -1]])
