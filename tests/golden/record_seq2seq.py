"""Record the golden answers of the 4.x ``summarization``, ``translation`` and
``text2text-generation`` pipelines (transformers 5 removed them)::

    /tmp/tf4/bin/python tests/golden/record_seq2seq.py

It (re)builds, deterministically, three tiny encoder-decoder models (seeded random weights,
d_model 32, 2 layers, a small Unigram vocabulary built with ``tokenizers``, so nothing is
downloaded and no sentencepiece model is needed):

* ``tests/golden/tiny-bart`` (BartForConditionalGeneration, learned positions: window 64,
  summarization settings in ``task_specific_params`` as bart-large-cnn has them),
* ``tests/golden/tiny-t5`` (T5ForConditionalGeneration, T5 tokenizer, ``task_specific_params``
  with the "summarize: " and "translate English to German: " prefixes),
* ``tests/golden/tiny-marian`` (MarianMTModel, no prefix),

and writes ``tests/golden/seq2seq_answers.json``: per model and task, the pipeline's answers
to every case (always called with ``truncation=True``: the 4.x default does not truncate and
an input longer than the window would fail), plus the logits of one probe input so that
transformers 5 can be checked to load the same model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
from tokenizers.models import Unigram
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    MarianConfig,
    MarianMTModel,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
    T5TokenizerFast,
    pipeline,
)

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "seq2seq_answers.json"
WINDOW = 64

_WORDS = (
    "the a an is was are be this that it i you we they he she movie film book great good bad "
    "love hate like not very really ray serve model batch text token fast slow happy sad man "
    "woman eating food play music paris france berlin city capital of in on and or but with "
    "for to from hello world health check who what where when why how summarize translate "
    "english german das ist ein haus die stadt der mann und frau cafe zurich tokyo river"
).split()
_CJK = list("東京中文字是的城市")
_PIECES = ["s", "ing", "ed", "er", "ly", "y", "e", "a", "n", "t", ":", ",", ".", "!", "?", "'"]


def vocabulary(specials: list[str]) -> list[tuple[str, float]]:
    """Specials, then "▁", single characters, pieces and whole words (longer: likelier)."""
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    upper = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    digits = [str(d) for d in range(10)]
    pieces = ["▁"] + letters + upper + digits + _PIECES + _CJK
    pieces += ["▁" + c for c in letters + upper]
    pieces += ["▁" + w for w in _WORDS] + ["▁" + w.capitalize() for w in _WORDS[:40]]
    scores = [(s, 0.0) for s in specials]
    seen = set(specials)
    for piece in pieces:
        if piece not in seen:
            seen.add(piece)
            scores.append((piece, -10.0 + 0.5 * len(piece)))
    return scores


def unigram(specials: list[str], unk: str, template: list[str]) -> Tokenizer:
    """The structure transformers 5's T5Tokenizer builds itself (so both agree)."""
    vocab = vocabulary(specials)
    tokenizer = Tokenizer(Unigram(vocab, unk_id=specials.index(unk), byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
    ])
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    ids = {token: specials.index(token) for token in template if token != "$A"}
    tokenizer.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=list(ids.items())
    )
    return tokenizer


def fresh(directory: Path) -> Path:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    return directory


def build_t5(directory: Path) -> Path:
    fresh(directory)
    tokenizer = T5TokenizerFast(
        tokenizer_object=unigram(["<pad>", "</s>", "<unk>"], "<unk>", ["$A", "</s>"]),
        eos_token="</s>", unk_token="<unk>", pad_token="<pad>", extra_ids=0,
        additional_special_tokens=[], model_max_length=WINDOW,
    )
    torch.manual_seed(21)
    config = T5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=16, d_ff=64, num_layers=2,
        num_decoder_layers=2, num_heads=2, relative_attention_num_buckets=8,
        relative_attention_max_distance=32, dropout_rate=0.0, initializer_factor=1.0,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
        task_specific_params={
            "summarization": {"prefix": "summarize: ", "max_length": 16, "min_length": 3,
                              "num_beams": 2, "no_repeat_ngram_size": 3,
                              "length_penalty": 2.0, "early_stopping": True},
            "translation_en_to_de": {"prefix": "translate English to German: ",
                                     "max_length": 20, "num_beams": 2, "early_stopping": True},
            "translation_en_to_fr": {"prefix": "translate English to French: ",
                                     "max_length": 20, "num_beams": 2, "early_stopping": True},
        },
    )
    model = T5ForConditionalGeneration(config).eval()
    model.generation_config.max_length = 24  # not the global 20: the pipeline honours it
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


def build_bart(directory: Path) -> Path:
    fresh(directory)
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=unigram(specials, "<unk>", ["<s>", "$A", "</s>"]),
        bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        mask_token="<mask>", model_max_length=WINDOW,
        model_input_names=["input_ids", "attention_mask"],
    )
    torch.manual_seed(22)
    config = BartConfig(
        vocab_size=len(tokenizer), d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
        decoder_ffn_dim=64, max_position_embeddings=WINDOW, init_std=0.2, dropout=0.0,
        attention_dropout=0.0, activation_dropout=0.0, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=2,
        task_specific_params={
            "summarization": {"max_length": 20, "min_length": 4, "num_beams": 3,
                              "no_repeat_ngram_size": 3, "length_penalty": 2.0,
                              "early_stopping": True},
        },
    )
    model = BartForConditionalGeneration(config).eval()
    model.generation_config.max_length = 24  # not the global 20: the pipeline honours it
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


def build_marian(directory: Path) -> Path:
    fresh(directory)
    specials = ["</s>", "<unk>", "<pad>"]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=unigram(specials, "<unk>", ["$A", "</s>"]),
        eos_token="</s>", unk_token="<unk>", pad_token="<pad>", model_max_length=WINDOW,
        model_input_names=["input_ids", "attention_mask"],
    )
    torch.manual_seed(23)
    config = MarianConfig(
        vocab_size=len(tokenizer), decoder_vocab_size=len(tokenizer), d_model=32,
        encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_position_embeddings=WINDOW, init_std=0.2, dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0, pad_token_id=2, eos_token_id=0, decoder_start_token_id=2,
        forced_eos_token_id=0, max_length=24, num_beams=2,
    )
    model = MarianMTModel(config).eval()
    model.generation_config.bad_words_ids = [[2]]  # as Marian checkpoints: never the pad
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


LONG = " ".join(f"{w} is a city and the capital of music {i}." for i, w in
                enumerate(["paris", "berlin", "tokyo", "zurich"] * 6))
INPUTS = [
    "the movie was really good",
    "hello world, the capital of France is Paris and the man is eating food",
    "Café naïve in Zürich 🙂, 東京 是 城市",
    LONG,  # longer than the 64-token window: truncated
    "a",
]
PARAMETERS = [
    {"max_new_tokens": 6, "num_beams": 1},
    {"max_new_tokens": 6, "num_beams": 3},
    {"max_new_tokens": 8, "min_length": 5, "num_beams": 1},
    {"max_new_tokens": 8, "num_beams": 1, "repetition_penalty": 1.5},
    {"max_length": 7, "max_new_tokens": None, "num_beams": 1},
]
MODELS = {
    "tiny-bart": (build_bart, ["summarization", "text2text-generation"], True),
    "tiny-t5": (build_t5, ["summarization", "translation", "text2text-generation"], True),
    "tiny-marian": (build_marian, ["translation", "text2text-generation"], True),
}
PROBE = "hello world, the capital of France is Paris"


def record(directory: Path, tasks: list[str]) -> dict:
    answers = {}
    for task in tasks:
        pipe = pipeline(task, model=str(directory), tokenizer=str(directory), device="cpu")
        cases = [{"parameters": {}, "inputs": INPUTS}]  # the model's and pipeline's defaults
        cases += [{"parameters": p, "inputs": INPUTS} for p in PARAMETERS]
        for case in cases:
            case["expected"] = pipe(case["inputs"], truncation=True, **case["parameters"])
        single = {"parameters": PARAMETERS[0], "inputs": INPUTS[0]}
        single["expected"] = pipe(INPUTS[0], truncation=True, **PARAMETERS[0])
        answers[task] = {"prefix": pipe.prefix, "cases": [*cases, single]}
        if task == "translation":
            answers[task]["pipeline_task"] = pipe.task
    pipe = pipeline("text2text-generation", model=str(directory), device="cpu")
    encoded = pipe.tokenizer(PROBE, return_tensors="pt")
    encoded = {k: encoded[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        logits = pipe.model(**encoded, decoder_input_ids=torch.tensor(
            [[pipe.model.config.decoder_start_token_id, 5, 6]])).logits
    probe = {"text": PROBE, "input_ids": encoded["input_ids"][0].tolist(),
             "decoder_input_ids": [pipe.model.config.decoder_start_token_id, 5, 6],
             "logits": [[round(x, 6) for x in row] for row in logits[0].tolist()]}
    return {"tasks": answers, "probe": probe}


def main() -> None:
    models = {}
    for name, (build, tasks, _) in MODELS.items():
        models[name] = record(build(HERE / name), tasks)
    OUTPUT.write_text(json.dumps(
        {"transformers_version": transformers.__version__, "models": models},
        indent=1, ensure_ascii=False,
    ) + "\n")
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
