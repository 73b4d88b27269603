"""Record the golden answers of ``transformers.pipeline("question-answering")`` (4.x).

transformers 5 removed the question-answering pipeline, so the answers users expect are
recorded once with transformers 4.x and committed with the tiny models they come from::

    python3 -m venv /tmp/tf4
    /tmp/tf4/bin/pip install torch==2.13.0 'transformers<5' numpy safetensors
    /tmp/tf4/bin/python tests/golden/record_qa.py

It (re)builds, deterministically, ``tests/golden/tiny-distilbert-qa`` and
``tests/golden/tiny-bert-qa`` (seeded random weights, a WordPiece vocabulary) and writes
``tests/golden/qa_answers.json``: per model, the pipeline's answers to every case, plus
the start/end logits of one probe input so that transformers 5 can be checked to load the
same model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import transformers
from transformers import (
    BertConfig,
    BertForQuestionAnswering,
    BertTokenizerFast,
    DistilBertConfig,
    DistilBertForQuestionAnswering,
    DistilBertTokenizerFast,
    pipeline,
)

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "qa_answers.json"
WINDOW = 128  # max_position_embeddings and the tokenizer's model_max_length
INIT = 0.2  # wider than the default 0.02 so that logits differ from token to token
QA_SCALE = 4.0  # qa_outputs weights × this: answers get clearly different scores

_WORDS = (
    "the a an is was are be this that it i you we they he she movie film book great good bad "
    "love hate like not very really ray serve model batch text token fast slow happy sad man "
    "woman eating food someone eats play plays music paris france berlin city capital of in "
    "on and or but with for to from hello world health check who what where when why how "
    "which does do did lives live born name my your his her river cafe naive zurich tokyo "
    "question answer context long window stride"
).split()
_PIECES = ["##s", "##ing", "##ed", "##er", "##ly", "##y", "##e", "##a", "##n", "##t"]
_CJK = list("東京中文字是的城市")


def write_vocab(directory: Path) -> Path:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    digits = [str(d) for d in range(10)]
    punctuation = list(".,!?'-:;\"()")
    vocab = (specials + letters + ["##" + c for c in letters] + digits + punctuation + _WORDS
             + _PIECES + _CJK)
    path = directory / "vocab.txt"
    path.write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    return path


def tokenizer_for(cls, directory: Path):
    vocab = str(write_vocab(directory))
    try:  # transformers 4.x
        return cls(vocab_file=vocab, model_max_length=WINDOW)
    except TypeError:  # transformers 5 takes the vocabulary as ``vocab``
        return cls(vocab=vocab, model_max_length=WINDOW)


def build(directory: Path, kind: str) -> Path:
    """A seeded tiny extractive-QA model of ``kind`` ("distilbert" or "bert")."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    if kind == "distilbert":
        torch.manual_seed(11)
        tokenizer = tokenizer_for(DistilBertTokenizerFast, directory)
        config = DistilBertConfig(
            vocab_size=tokenizer.vocab_size, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
            max_position_embeddings=WINDOW, initializer_range=INIT,
            pad_token_id=tokenizer.pad_token_id,
        )
        model = DistilBertForQuestionAnswering(config).eval()
    else:
        torch.manual_seed(12)
        tokenizer = tokenizer_for(BertTokenizerFast, directory)
        config = BertConfig(
            vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
            num_attention_heads=2, intermediate_size=64, max_position_embeddings=WINDOW,
            initializer_range=INIT, pad_token_id=tokenizer.pad_token_id,
        )
        model = BertForQuestionAnswering(config).eval()
    with torch.no_grad():
        model.qa_outputs.weight.mul_(QA_SCALE)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


PARIS = "paris is the capital of france and berlin is a city in germany."
LONG = " ".join(
    f"{word} is a city and the capital of music {i}." for i, word in
    enumerate(["paris", "berlin", "tokyo", "zurich"] * 12)
)
UNICODE = "Café naïve in Zürich 🙂, 東京 是 城市 and   the   river   of  paris 🙃 ok."
SPACES = "   the  movie   was \t really\n good  and   paris  is    great   "

CASES: list[dict] = [
    {"name": "single", "inputs": {"question": "what is the capital of france?",
                                  "context": PARIS}, "parameters": {}},
    {"name": "batch", "inputs": [
        {"question": "what is the capital of france?", "context": PARIS},
        {"question": "who eats food?", "context": "a man is eating food and a woman plays music."},
        {"question": "where does she live?", "context": "she lives in berlin, he lives in paris."},
    ], "parameters": {}},
    {"name": "top_k_1", "inputs": {"question": "which city?", "context": PARIS},
     "parameters": {"top_k": 1}},
    {"name": "top_k_3", "inputs": {"question": "which city?", "context": PARIS},
     "parameters": {"top_k": 3}},
    {"name": "batch_top_k_3", "inputs": [
        {"question": "which city?", "context": PARIS},
        {"question": "what is good?", "context": SPACES},
    ], "parameters": {"top_k": 3}},
    {"name": "impossible", "inputs": {"question": "who is he?", "context": PARIS},
     "parameters": {"handle_impossible_answer": True}},
    {"name": "impossible_top_k_3", "inputs": {"question": "who is he?", "context": PARIS},
     "parameters": {"handle_impossible_answer": True, "top_k": 3}},
    {"name": "max_answer_len_2", "inputs": {"question": "what is paris?", "context": PARIS},
     "parameters": {"max_answer_len": 2, "top_k": 2}},
    {"name": "long_default", "inputs": {"question": "what is the capital of music?",
                                        "context": LONG}, "parameters": {"top_k": 3}},
    {"name": "long_stride", "inputs": {"question": "which city is the capital?",
                                       "context": LONG},
     "parameters": {"max_seq_len": 48, "doc_stride": 16, "top_k": 4}},
    {"name": "long_stride_impossible", "inputs": [
        {"question": "where?", "context": LONG},
        {"question": "what is the capital of france?", "context": PARIS},
    ], "parameters": {"max_seq_len": 64, "doc_stride": 20, "handle_impossible_answer": True}},
    {"name": "unicode", "inputs": {"question": "where is the cafe?", "context": UNICODE},
     "parameters": {"top_k": 5}},
    {"name": "unicode_cjk_question", "inputs": {"question": "東京 是 什么?",
                                                "context": UNICODE}, "parameters": {}},
    {"name": "unicode_unaligned", "inputs": {"question": "where is the cafe?",
                                             "context": UNICODE},
     "parameters": {"top_k": 5, "align_to_words": False}},
    {"name": "whitespace", "inputs": {"question": "  what   was good? ", "context": SPACES},
     "parameters": {"top_k": 3}},
    {"name": "whitespace_unaligned", "inputs": {"question": "what was good?", "context": SPACES},
     "parameters": {"top_k": 3, "align_to_words": False, "max_answer_len": 4}},
]

PROBE = {"question": "what is the capital of france?", "context": PARIS}


def record(directory: Path) -> dict:
    qa = pipeline("question-answering", model=str(directory), tokenizer=str(directory),
                  device="cpu")
    cases = []
    for case in CASES:
        expected = qa(case["inputs"], **case["parameters"])
        cases.append({**case, "expected": expected})
    encoded = qa.tokenizer(PROBE["question"], PROBE["context"], return_tensors="pt")
    with torch.no_grad():
        output = qa.model(**{k: v for k, v in encoded.items()
                             if k in qa.tokenizer.model_input_names})
    probe = {
        **PROBE, "input_ids": encoded["input_ids"][0].tolist(),
        "start_logits": output.start_logits[0].tolist(),
        "end_logits": output.end_logits[0].tolist(),
    }
    return {"cases": cases, "probe": probe}


def main() -> None:
    models = {}
    for name, kind in (("tiny-distilbert-qa", "distilbert"), ("tiny-bert-qa", "bert")):
        models[name] = record(build(HERE / name, kind))
    OUTPUT.write_text(json.dumps(
        {"transformers_version": transformers.__version__, "models": models},
        indent=1, ensure_ascii=False,
    ) + "\n")
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
