"""Tokenization into compact numpy arrays, and padding them back into batches.

The tokenizer deployment sends :class:`EncodedInputs` through Ray's object store: one
flat ``int32`` array of all token ids plus per-text lengths, which pickles far smaller
and faster than a list of torch tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serving.errors import InputTooLongError
from serving.models import read_json

# Tokenizers without a real limit report this huge sentinel as model_max_length.
_NO_LIMIT = 10**6


@dataclass(frozen=True)
class EncodedInputs:
    """Token ids of several texts, concatenated without padding."""

    input_ids: np.ndarray  # int32, all texts back to back
    lengths: np.ndarray  # int32, tokens per text
    token_type_ids: np.ndarray | None  # int8, same layout as input_ids, or None
    pad_token_id: int
    # Only when encoded ``with_offsets``: per token its (start, end) character offsets in
    # its text (int32 [total_tokens, 2]) and whether it is a special token (int8).
    offsets: np.ndarray | None = None
    special_tokens_mask: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def num_tokens(self) -> int:
        return int(self.lengths.sum())

    def rows(self) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """Per-text ``(input_ids, token_type_ids)`` views."""
        if len(self) == 0:
            return []
        bounds = np.cumsum(self.lengths)[:-1]
        ids = np.split(self.input_ids, bounds)
        types = np.split(self.token_type_ids, bounds) if self.token_type_ids is not None else None
        return [(row, types[i] if types is not None else None) for i, row in enumerate(ids)]

    def token_rows(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per-text ``(input_ids, offsets, special_tokens_mask)`` views.

        Raises:
            ValueError: the texts were not encoded ``with_offsets``.
        """
        if self.offsets is None or self.special_tokens_mask is None:
            raise ValueError("these inputs were encoded without offsets")
        if len(self) == 0:
            return []
        bounds = np.cumsum(self.lengths)[:-1]
        return list(zip(
            np.split(self.input_ids, bounds), np.split(self.offsets, bounds),
            np.split(self.special_tokens_mask, bounds), strict=True,
        ))

    def chunks(self, size: int) -> list[EncodedInputs]:
        """Split into consecutive pieces of at most ``size`` texts."""
        if len(self) <= size:
            return [self]
        starts = np.concatenate([[0], np.cumsum(self.lengths)])
        pieces = []
        for first in range(0, len(self), size):
            last = min(first + size, len(self))
            lo, hi = starts[first], starts[last]
            types = self.token_type_ids[lo:hi] if self.token_type_ids is not None else None
            offsets = self.offsets[lo:hi] if self.offsets is not None else None
            special = (
                self.special_tokens_mask[lo:hi] if self.special_tokens_mask is not None else None
            )
            pieces.append(
                EncodedInputs(
                    self.input_ids[lo:hi], self.lengths[first:last], types, self.pad_token_id,
                    offsets, special,
                )
            )
        return pieces


def pad_batch(
    rows: list[tuple[np.ndarray, np.ndarray | None]], pad_token_id: int
) -> dict[str, np.ndarray]:
    """Right-pad rows into ``input_ids``/``attention_mask`` (and ``token_type_ids``) arrays."""
    width = max(len(ids) for ids, _ in rows)
    input_ids = np.full((len(rows), width), pad_token_id, dtype=np.int64)
    attention_mask = np.zeros((len(rows), width), dtype=np.int64)
    has_types = rows[0][1] is not None
    token_type_ids = np.zeros((len(rows), width), dtype=np.int64) if has_types else None
    for i, (ids, types) in enumerate(rows):
        input_ids[i, : len(ids)] = ids
        attention_mask[i, : len(ids)] = 1
        if token_type_ids is not None and types is not None:
            token_type_ids[i, : len(types)] = types
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    if token_type_ids is not None:
        batch["token_type_ids"] = token_type_ids
    return batch


def model_window(tokenizer, model_config, source: str, revision: str | None) -> int:
    """The most tokens an input may have, as the model and its sentence-transformers
    config define it."""
    limits = []
    st_config = read_json(source, "sentence_bert_config.json", revision) or {}
    if st_config.get("max_seq_length"):
        limits.append(int(st_config["max_seq_length"]))
    if 0 < tokenizer.model_max_length < _NO_LIMIT:
        limits.append(int(tokenizer.model_max_length))
    positions = getattr(model_config, "max_position_embeddings", None)
    if positions:
        limits.append(int(positions))
    return min(limits) if limits else 512


class TextTokenizer:
    """A Hugging Face fast tokenizer that encodes lists of texts (or pairs) at once."""

    def __init__(self, tokenizer, max_length: int) -> None:
        self._tokenizer = tokenizer
        self.max_length = max_length
        pad = tokenizer.pad_token_id
        self.pad_token_id = int(pad if pad is not None else (tokenizer.eos_token_id or 0))
        self._wants_token_types = "token_type_ids" in tokenizer.model_input_names

    @classmethod
    def load(
        cls,
        source: str,
        revision: str | None = None,
        max_input_tokens: int | None = None,
        trust_remote_code: bool = False,
    ) -> TextTokenizer:
        """Load from a local directory or Hub id; the window is capped by ``max_input_tokens``."""
        from transformers import AutoConfig, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(
            source, revision=revision, use_fast=True, trust_remote_code=trust_remote_code
        )
        model_config = AutoConfig.from_pretrained(
            source, revision=revision, trust_remote_code=trust_remote_code
        )
        window = model_window(tokenizer, model_config, source, revision)
        if max_input_tokens is not None:
            window = min(window, max_input_tokens)
        return cls(tokenizer, window)

    def encode(
        self,
        texts: list[str],
        text_pairs: list[str] | None = None,
        truncate: bool | str = True,
        with_offsets: bool = False,
    ) -> EncodedInputs:
        """Tokenize ``texts`` (with optional second segments).

        ``truncate`` may also name a Hugging Face truncation strategy (``"only_first"``),
        passed to the tokenizer as is; ``True`` is ``"longest_first"``. ``with_offsets`` also
        returns each token's character offsets and the special-tokens mask.

        Raises:
            InputTooLongError: an input exceeds the window and ``truncate`` is False, or the
                segment a strategy keeps whole (the second, for ``"only_first"``) is too long.
        """
        try:
            encoding = self._tokenizer(
                texts,
                text_pairs,
                truncation=truncate,
                max_length=self.max_length if truncate else None,
                return_attention_mask=False,
                return_token_type_ids=self._wants_token_types,
                return_offsets_mapping=with_offsets,
                return_special_tokens_mask=with_offsets,
            )
        except Exception as exc:
            if not isinstance(truncate, str) or "too short" not in str(exc):
                raise
            raise InputTooLongError(
                f"an input cannot be truncated to the model's limit of {self.max_length} "
                f"tokens with strategy {truncate!r}: the part kept whole is too long"
            ) from None
        rows = encoding["input_ids"]
        lengths = np.fromiter((len(row) for row in rows), dtype=np.int32, count=len(rows))
        if not truncate and len(rows) and lengths.max() > self.max_length:
            index = int(lengths.argmax())
            raise InputTooLongError(
                f"inputs[{index}] has {int(lengths[index])} tokens, more than the model's "
                f"limit of {self.max_length}; shorten it or allow truncation"
            )
        total = int(lengths.sum())
        input_ids = np.fromiter((t for row in rows for t in row), dtype=np.int32, count=total)
        token_type_ids = None
        if self._wants_token_types:
            token_type_ids = np.fromiter(
                (t for row in encoding["token_type_ids"] for t in row), dtype=np.int8,
                count=total,
            )
        offsets = special = None
        if with_offsets:
            offsets = np.fromiter(
                (i for row in encoding["offset_mapping"] for pair in row for i in pair),
                dtype=np.int32, count=2 * total,
            ).reshape(total, 2)
            special = np.fromiter(
                (t for row in encoding["special_tokens_mask"] for t in row), dtype=np.int8,
                count=total,
            )
        return EncodedInputs(
            input_ids, lengths, token_type_ids, self.pad_token_id, offsets, special
        )

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Token counts of ``texts`` with special tokens and no truncation."""
        return [len(ids) for ids in self._tokenizer(texts, truncation=False)["input_ids"]]
