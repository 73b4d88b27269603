"""Tiny randomly initialised models of the canonical architectures, saved like Hub repos.

Tests load them through the same ``from_pretrained`` path users take, so nothing is
downloaded. Weights are seeded: every build gives the same numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    BertTokenizerFast,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    DistilBertTokenizerFast,
    GPT2Config,
    GPT2LMHeadModel,
    GPT2TokenizerFast,
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaForTokenClassification,
    RobertaTokenizerFast,
)

_WORDS = (
    "the a an is was are be this that it i you we they he she movie film book great good bad "
    "terrible awful love hate like not very really ray serve model batch text token fast slow "
    "happy sad man woman eating food someone eats play plays music paris france berlin city "
    "capital of in on and or but with for to from hello world health check"
).split()
_PIECES = ["##s", "##ing", "##ed", "##er", "##ly", "##y", "##e", "##a", "##n", "##t"]
NLI_SCALE = 2.0  # classifier weights × this, so labels score apart
NLI_INIT = 0.2  # wider init than the default 0.02: outputs vary with the input


def _write_vocab(directory: Path) -> Path:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    punctuation = list(".,!?'-:;\"()")
    vocab = specials + letters + ["##" + c for c in letters] + punctuation + _WORDS + _PIECES
    path = directory / "vocab.txt"
    path.write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    return path


def _save(model, tokenizer, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)  # safetensors
    tokenizer.save_pretrained(directory)
    return directory


def _tokenizer(cls, directory: Path, max_length: int):
    directory.mkdir(parents=True, exist_ok=True)
    return cls(vocab=str(_write_vocab(directory)), model_max_length=max_length)


def distilbert_sst2(directory: Path) -> Path:
    """DistilBERT sequence classifier with SST-2's labels (single-label, softmax)."""
    torch.manual_seed(0)
    tokenizer = _tokenizer(DistilBertTokenizerFast, directory, 64)
    config = DistilBertConfig(
        vocab_size=tokenizer.vocab_size, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
        max_position_embeddings=64, id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1}, pad_token_id=tokenizer.pad_token_id,
    )
    return _save(DistilBertForSequenceClassification(config).eval(), tokenizer, directory)


def bert_multilabel(directory: Path) -> Path:
    """BERT classifier with three labels and multi-label problem type (sigmoid scores)."""
    torch.manual_seed(1)
    tokenizer = _tokenizer(BertTokenizerFast, directory, 64)
    labels = ["joy", "anger", "surprise"]
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
        id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)},
        problem_type="multi_label_classification",
    )
    return _save(BertForSequenceClassification(config).eval(), tokenizer, directory)


def bert_cross_encoder(directory: Path) -> Path:
    """BERT with one output (a cross-encoder / reranker: sigmoid of one logit per pair)."""
    torch.manual_seed(4)
    tokenizer = _tokenizer(BertTokenizerFast, directory, 64)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64, num_labels=1,
    )
    return _save(BertForSequenceClassification(config).eval(), tokenizer, directory)


def bert_nli(directory: Path) -> Path:
    """BERT NLI classifier (contradiction/neutral/entailment) for zero-shot classification.

    A wider weight init and scaled-up classifier weights make the scores differ clearly
    between hypotheses (a default tiny model scores every label within 1e-4), so ranking the
    labels is a meaningful test.
    """
    torch.manual_seed(3)
    tokenizer = _tokenizer(BertTokenizerFast, directory, 64)
    labels = ["contradiction", "neutral", "entailment"]
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
        id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)},
        initializer_range=NLI_INIT,
    )
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(NLI_SCALE)
    return _save(model, tokenizer, directory)


def bert_encoder(directory: Path, sentence_transformers: bool) -> Path:
    """BERT encoder; with ``sentence_transformers`` it also gets a sentence-transformers
    config (mean pooling + normalize, max_seq_length 48) like all-MiniLM-L6-v2."""
    torch.manual_seed(2)
    tokenizer = _tokenizer(BertTokenizerFast, directory, 64)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
    )
    _save(BertModel(config).eval(), tokenizer, directory)
    if sentence_transformers:
        modules = [
            {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
            for i, (path, kind) in enumerate(
                [("", "Transformer"), ("1_Pooling", "Pooling"), ("2_Normalize", "Normalize")]
            )
        ]
        (directory / "modules.json").write_text(json.dumps(modules))
        (directory / "1_Pooling").mkdir()
        (directory / "1_Pooling" / "config.json").write_text(json.dumps({
            "word_embedding_dimension": 32, "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        }))
        (directory / "2_Normalize").mkdir()
        (directory / "sentence_bert_config.json").write_text(
            json.dumps({"max_seq_length": 48, "do_lower_case": False})
        )
    return directory


def prompted_encoder(directory: Path) -> Path:
    """:func:`bert_encoder` (sentence-transformers) whose config names query and document
    prompts, the document one applied by default, as e5 and bge models do."""
    bert_encoder(directory, sentence_transformers=True)
    (directory / "config_sentence_transformers.json").write_text(json.dumps({
        "prompts": {"query": "query: ", "document": "passage: "},
        "default_prompt_name": "document", "similarity_fn_name": "cosine",
    }))
    return directory


def splade_encoder(directory: Path) -> Path:
    """A SPLADE sparse encoder as sentence-transformers' ``SparseEncoder`` saves it (an MLM
    transformer and SPLADE max pooling), on the weights of :func:`bert_masked_lm`."""
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.models import MLMTransformer, SpladePooling

    masked = bert_masked_lm(directory.with_name(directory.name + "-mlm"))
    encoder = SparseEncoder(modules=[MLMTransformer(str(masked)),
                                     SpladePooling(pooling_strategy="max")], device="cpu")
    encoder.save(str(directory))
    return directory


def bert_masked_lm(directory: Path) -> Path:
    """BERT with a masked-language-modelling head (fill-mask)."""
    torch.manual_seed(4)
    tokenizer = _tokenizer(BertTokenizerFast, directory, 64)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
    )
    return _save(BertForMaskedLM(config).eval(), tokenizer, directory)


NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]
NER_SCALE = 8.0  # classifier weights × this, so tokens get different labels


def bert_ner(directory: Path) -> Path:
    """BERT token classifier with CoNLL-2003's labels (token-classification / NER).

    A wider init and scaled-up classifier weights make the predicted label vary from token
    to token (a default tiny model predicts one label everywhere), so grouping is tested.
    """
    torch.manual_seed(5)
    tokenizer = _tokenizer(BertTokenizerFast, directory, 64)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
        id2label=dict(enumerate(NER_LABELS)),
        label2id={label: i for i, label in enumerate(NER_LABELS)},
        initializer_range=NLI_INIT,
    )
    model = BertForTokenClassification(config).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(NER_SCALE)
    return _save(model, tokenizer, directory)


GPT2_CORPUS = (
    " ".join(_WORDS),
    "the movie was great. I love this film! Ray Serve batches text fast.",
    "Hello world, café 東京 🙂: the capital of France is Paris.",
)


def gpt2_lm(directory: Path) -> Path:
    """GPT-2 language model (text-generation) with a byte-level BPE tokenizer trained offline
    on a small corpus; no pad token, like the real GPT-2."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    torch.manual_seed(6)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<|endoftext|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(GPT2_CORPUS * 3, trainer)
    eos = "<|endoftext|>"
    tokenizer = GPT2TokenizerFast(
        tokenizer_object=bpe, bos_token=eos, eos_token=eos, unk_token=eos, model_max_length=128
    )
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=2, n_head=2,
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
        initializer_range=NLI_INIT,
    )
    return _save(GPT2LMHeadModel(config).eval(), tokenizer, directory)


# A chat template for the tiny GPT-2 (real GPT-2 has none): one "role: content" line per
# message, then the assistant's turn opened.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
)


def gpt2_chat_lm(directory: Path) -> Path:
    """The tiny GPT-2 of :func:`gpt2_lm` (same weights) with :data:`CHAT_TEMPLATE`."""
    gpt2_lm(directory)
    tokenizer = GPT2TokenizerFast.from_pretrained(directory)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(directory)
    return directory


ROBERTA_CORPUS = (
    " ".join(_WORDS),
    " ".join(_WORDS).title(),
    "the movie was great. I love this film! Ray Serve batches text fast.",
    "Hello world, café naïve Zürich 東京 🙂: the capital of France is Paris.",
    "my dog and your cat. The dog plays; a cat eats, and we love dogs.",
)
ROBERTA_POSITIONS = 130  # 128 tokens: RoBERTa's positions start after the padding id (1)


def _roberta_tokenizer(max_length: int):
    """A byte-level BPE tokenizer like RoBERTa's (distilroberta-base): ``<s> … </s>`` around
    each text, ``Ġ``-prefixed words, no prefix space, and a ``<mask>`` that swallows the
    space before it (``lstrip``), trained offline on a small corpus."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=480, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(ROBERTA_CORPUS * 3, trainer)
    trained = json.loads(bpe.to_str())["model"]
    return RobertaTokenizerFast(
        vocab=trained["vocab"], merges=[tuple(merge) for merge in trained["merges"]],
        mask_token=AddedToken("<mask>", lstrip=True, rstrip=False, normalized=False,
                              special=True),
        model_max_length=max_length,
    )


def _roberta_config(tokenizer, **kwargs) -> RobertaConfig:
    return RobertaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=ROBERTA_POSITIONS, type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, **kwargs,
    )


def roberta_masked_lm(directory: Path) -> Path:
    """RoBERTa with a masked-language-modelling head (fill-mask), like distilroberta-base."""
    torch.manual_seed(7)
    tokenizer = _roberta_tokenizer(ROBERTA_POSITIONS - 2)
    model = RobertaForMaskedLM(_roberta_config(tokenizer, initializer_range=NLI_INIT))
    return _save(model.eval(), tokenizer, directory)


def roberta_ner(directory: Path) -> Path:
    """RoBERTa token classifier with CoNLL-2003's labels; scaled like :func:`bert_ner` so
    labels vary from token to token."""
    torch.manual_seed(8)
    tokenizer = _roberta_tokenizer(ROBERTA_POSITIONS - 2)
    config = _roberta_config(
        tokenizer, id2label=dict(enumerate(NER_LABELS)),
        label2id={label: i for i, label in enumerate(NER_LABELS)}, initializer_range=NLI_INIT,
    )
    model = RobertaForTokenClassification(config).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(NER_SCALE)
    return _save(model, tokenizer, directory)


def classifier(directory: Path, seed: int) -> Path:
    """A tiny DistilBERT classifier; each seed gives other weights and 2 to 4 labels."""
    torch.manual_seed(seed)
    tokenizer = _tokenizer(DistilBertTokenizerFast, directory, 64)
    labels = [f"label-{seed}-{i}" for i in range(2 + seed % 3)]
    config = DistilBertConfig(
        vocab_size=tokenizer.vocab_size, dim=32, n_layers=1, n_heads=2, hidden_dim=64,
        max_position_embeddings=64, id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        pad_token_id=tokenizer.pad_token_id, initializer_range=NLI_INIT,
    )
    return _save(DistilBertForSequenceClassification(config).eval(), tokenizer, directory)


def classifier_pool(root: Path, count: int) -> Path:
    """A model pool directory: ``count`` classifiers ``m00``, ``m01``... (see
    :func:`classifier`)."""
    for index in range(count):
        classifier(root / f"m{index:02d}", seed=100 + index)
    return root


def lora_adapters(base: Path, root: Path, count: int) -> Path:
    """``count`` PEFT LoRA adapters ``a0``, ``a1``... of the classifier at ``base``, each
    with its own classification head (``modules_to_save``), in directory ``root``."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification

    for index in range(count):
        torch.manual_seed(200 + index)
        model = get_peft_model(
            AutoModelForSequenceClassification.from_pretrained(base),
            LoraConfig(task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8,
                       target_modules=["q_lin", "v_lin"], init_lora_weights=False),
        )
        with torch.no_grad():  # heads that differ from the base's and from each other
            for name, weight in model.named_parameters():
                if "modules_to_save" in name:
                    weight.add_(torch.randn_like(weight) * 0.5)
        model.save_pretrained(root / f"a{index}")  # adapter_model.safetensors
    return root


def build_all(root: Path) -> dict[str, Path]:
    """Build every tiny model under ``root``; returns name → directory."""
    return {
        "sst2": distilbert_sst2(root / "tiny-distilbert-sst2"),
        "multilabel": bert_multilabel(root / "tiny-bert-multilabel"),
        "st": bert_encoder(root / "tiny-bert-st", sentence_transformers=True),
        "st-prompts": prompted_encoder(root / "tiny-bert-st-prompts"),
        "splade": splade_encoder(root / "tiny-splade"),
        "encoder": bert_encoder(root / "tiny-bert", sentence_transformers=False),
        "masked": bert_masked_lm(root / "tiny-bert-mlm"),
        "nli": bert_nli(root / "tiny-bert-nli"),
        "cross-encoder": bert_cross_encoder(root / "tiny-bert-cross-encoder"),
        "ner": bert_ner(root / "tiny-bert-ner"),
        "gpt2": gpt2_lm(root / "tiny-gpt2"),
        "gpt2-chat": gpt2_chat_lm(root / "tiny-gpt2-chat"),
        "roberta-masked": roberta_masked_lm(root / "tiny-roberta-mlm"),
        "roberta-ner": roberta_ner(root / "tiny-roberta-ner"),
    }


def four_model_app(root: Path, **settings) -> dict:
    """The ``args`` of the four-model app a new user writes first (sentiment, entities,
    summaries, generation; tiny stand-ins built under ``root``), with ``settings`` on
    every model."""
    golden = Path(__file__).resolve().parent / "golden"
    models = [("sentiment", "text-classification", distilbert_sst2(root / "sst2")),
              ("ner", "token-classification", bert_ner(root / "ner")),
              ("summarize", "summarization", golden / "tiny-bart"),
              ("gpt2", "text-generation", gpt2_lm(root / "gpt2"))]
    return {"models": [{"name": name, "task": task, "model": str(path), **settings}
                       for name, task, path in models]}
