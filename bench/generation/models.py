"""The generation benchmark's models: a GPT-2-size decoder with seeded random weights and a
byte-level BPE tokenizer trained offline, saved like a Hub repo so every system loads it
through ``from_pretrained`` from the same directory.

Output lengths are fixed by ``max_tokens``: the end-of-text token's embedding row (tied to
the output layer) is zero, so its logit is always 0 while the best of the 50k others is
about four standard deviations above 0; greedy decoding never picks it (the benchmark
checks every answer's token count against its ``max_tokens``).
"""

from __future__ import annotations

import json
import shutil
import sysconfig
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.project import ROOT

MODELS_DIR = ROOT / "bench" / ".generation-models"
EOS = "<|endoftext|>"
SEED = 0
_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


@dataclass(frozen=True)
class DecoderSize:
    """GPT-2's shape (the defaults: GPT-2 small, 124M parameters)."""

    n_layer: int = 12
    n_embd: int = 768
    n_head: int = 12
    n_positions: int = 1024
    vocab_size: int = 50257


GPT2_SMALL = DecoderSize()
TINY = DecoderSize(n_layer=2, n_embd=64, n_head=2, n_positions=512, vocab_size=2048)


def ensure_decoder(size: DecoderSize = GPT2_SMALL, root: Path = MODELS_DIR) -> Path:
    """The directory of the decoder of ``size`` under ``root``, built unless complete.

    Returns:
        The model directory (config, safetensors weights, fast tokenizer).
    """
    path = root / f"gpt2-{size.n_layer}l-{size.n_embd}d-{size.vocab_size}v"
    if _complete(path, size):
        return path
    root.mkdir(parents=True, exist_ok=True)
    # Built models are never committed: the folder ignores itself, as a venv does.
    (root / ".gitignore").write_text("*\n")
    # Built beside the target and moved in, so a server never sees half a model.
    staging = path.with_name(path.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    _build_decoder(staging, size)
    shutil.rmtree(path, ignore_errors=True)
    staging.rename(path)
    return path


def _complete(path: Path, size: DecoderSize) -> bool:
    if not all((path / name).is_file() for name in _FILES):
        return False
    built = json.loads((path / "bench-size.json").read_text()) if (
        path / "bench-size.json").is_file() else None
    return built == asdict(size)


def _corpus() -> list[str]:
    """The Python standard library's sources: plenty of text to learn 50k merges from."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.rglob("*.py")
                   if "site-packages" not in p.parts and "test" not in p.parts)
    return [p.read_text(errors="replace") for p in files]


def train_tokenizer(vocab_size: int, max_length: int):
    """A GPT-2-style byte-level BPE tokenizer of exactly ``vocab_size`` ids (the last ones
    plain filler tokens if the corpus runs out of merges), ``<|endoftext|>`` its id 0."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2TokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(_corpus(), trainer)
    short = vocab_size - bpe.get_vocab_size()
    if short > 0:  # every id the model can generate must decode to text
        bpe.add_tokens([f"<f{i}>" for i in range(short)])
    tokenizer = GPT2TokenizerFast(tokenizer_object=bpe, bos_token=EOS, eos_token=EOS,
                                  unk_token=EOS, model_max_length=max_length)
    assert len(tokenizer) == vocab_size, (len(tokenizer), vocab_size)
    return tokenizer


def _build_decoder(directory: Path, size: DecoderSize) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = train_tokenizer(size.vocab_size, size.n_positions)
    eos = tokenizer.eos_token_id
    config = GPT2Config(
        vocab_size=size.vocab_size, n_positions=size.n_positions, n_embd=size.n_embd,
        n_layer=size.n_layer, n_head=size.n_head, bos_token_id=eos, eos_token_id=eos,
        architectures=["GPT2LMHeadModel"],
    )
    torch.manual_seed(SEED)  # the same weights on every build
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # tied to the output layer: EOS's logit is 0, never the best
        model.transformer.wte.weight[eos].zero_()
    directory.mkdir(parents=True)
    model.save_pretrained(directory)  # safetensors
    tokenizer.save_pretrained(directory)
    (directory / "bench-size.json").write_text(json.dumps(asdict(size)))
