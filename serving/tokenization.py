"""Tokenization into compact numpy arrays, and padding them back into batches.

The tokenizer deployment sends :class:`EncodedInputs` through Ray's object store: one
flat ``int32`` array of all token ids plus per-text lengths, which pickles far smaller
and faster than a list of torch tensors.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.errors import InputTooLongError, InvalidInputError
from serving.models import read_json, resolve_model_source

# Tokenizers without a real limit report this huge sentinel as model_max_length.
_NO_LIMIT = 10**6
# Models numbering positions from padding_idx + 1 (RoBERTa's create_position_ids_from_input_ids):
# their max_position_embeddings (514) holds pad_token_id + 1 (2) positions fewer tokens (512).
_PADDING_OFFSET_POSITIONS = frozenset({
    "roberta", "roberta-prelayernorm", "xlm-roberta", "xlm-roberta-xl", "camembert",
    "data2vec-text", "ibert", "longformer", "luke", "mpnet", "xmod",
})

# Hugging Face fast tokenizers apply truncation, stride and padding by setting them on the
# shared Rust tokenizer before each call: two threads encoding with different settings at
# once encode with each other's (wrong windows, or "Truncation error: Second sequence not
# provided"). Ray Serve runs sync methods in a thread pool and generation runs in threads,
# so every encode in this project goes through ``tokenize``.
_ENCODE_LOCK = threading.Lock()


def tokenize(tokenizer: Any, *args: Any, **kwargs: Any) -> Any:
    """``tokenizer(*args, **kwargs)``, one call at a time in this process."""
    with _ENCODE_LOCK:
        return tokenizer(*args, **kwargs)


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
    # Only when encoded with ``windows`` (one input may become several rows): per row the
    # index of the input it belongs to (int32, ascending), and per token its sequence
    # (int8: 0, 1, or -1 for special tokens) and word index in that sequence (int32, -1).
    owners: np.ndarray | None = None
    sequence_ids: np.ndarray | None = None
    word_ids: np.ndarray | None = None

    def __len__(self) -> int:
        """The number of rows (more than the inputs when inputs were split into windows)."""
        return len(self.lengths)

    @property
    def num_inputs(self) -> int:
        """The number of encoded inputs (texts or pairs)."""
        if self.owners is None:
            return len(self)
        return int(self.owners[-1]) + 1 if len(self.owners) else 0

    def row_ranges(self, counts: list[int]) -> list[tuple[int, int]]:
        """Row ``[start, stop)`` of each run of ``counts`` consecutive inputs."""
        bounds = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        if self.owners is not None:
            bounds = np.searchsorted(self.owners, bounds, side="left")
        return [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]

    def window_rows(self) -> list[WindowRow]:
        """Per row its owner input and token arrays (inputs encoded with ``windows``).

        Raises:
            ValueError: the inputs were not encoded with ``windows``.
        """
        if self.owners is None or self.offsets is None or self.word_ids is None:
            raise ValueError("these inputs were encoded without windows")
        if len(self) == 0:
            return []
        bounds = np.cumsum(self.lengths)[:-1]
        return [
            WindowRow(int(owner), *parts) for owner, *parts in zip(
                self.owners, np.split(self.input_ids, bounds), np.split(self.offsets, bounds),
                np.split(self.sequence_ids, bounds), np.split(self.word_ids, bounds),
                strict=True,
            )
        ]

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
                    self.owners[first:last] if self.owners is not None else None,
                    self.sequence_ids[lo:hi] if self.sequence_ids is not None else None,
                    self.word_ids[lo:hi] if self.word_ids is not None else None,
                )
            )
        return pieces


@dataclass(frozen=True)
class WindowRow:
    """One row of inputs encoded with ``windows``: a window over one (text, text_pair)."""

    owner: int  # index of the input this window belongs to
    input_ids: np.ndarray
    offsets: np.ndarray  # (start, end) character offsets in the token's own text
    sequence_ids: np.ndarray  # 0: text, 1: text_pair, -1: special token
    word_ids: np.ndarray  # word index within the token's sequence, -1 for special tokens


def _flat(rows, dtype, count: int) -> np.ndarray:
    return np.fromiter((-1 if t is None else t for row in rows for t in row), dtype=dtype,
                       count=count)


def length_buckets(lengths: list[int], spread: float = 2.0) -> list[list[int]]:
    """Row indices grouped for separate padded passes, shortest rows first.

    Rows are sorted by length and a new group starts where a row is more than ``spread``
    times longer than its group's shortest row, so no row is padded to more than ``spread``
    times its length: a batch of short texts with one long text runs as two passes instead
    of padding every short text to the long one.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    groups: list[list[int]] = []
    for index in order:
        if groups and lengths[index] <= spread * lengths[groups[-1][0]]:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


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
        if getattr(model_config, "model_type", None) in _PADDING_OFFSET_POSITIONS:
            pad = getattr(model_config, "pad_token_id", None)
            positions -= (1 if pad is None else int(pad)) + 1
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

    @classmethod
    def from_settings(cls, settings: dict) -> TextTokenizer:
        """Load as ``ModelSpec.load_settings()`` describes."""
        return cls.load(
            resolve_model_source(settings["model"]),
            revision=settings.get("revision"),
            max_input_tokens=settings.get("max_input_tokens"),
            trust_remote_code=settings.get("trust_remote_code", False),
        )

    def encode(
        self,
        texts: list[str],
        text_pairs: list[str] | None = None,
        truncate: bool | str = True,
        with_offsets: bool = False,
        windows: list[tuple[int | None, int | None]] | None = None,
    ) -> EncodedInputs:
        """Tokenize ``texts`` (with optional second segments).

        ``truncate`` may also name a Hugging Face truncation strategy (``"only_first"``),
        passed to the tokenizer as is; ``True`` is ``"longest_first"``. ``with_offsets`` also
        returns each token's character offsets and the special-tokens mask.

        ``windows`` (per pair ``(max_seq_len, doc_stride)``, see :meth:`encode_windows`)
        splits long second segments into overlapping windows instead; ``truncate`` is then
        ignored.

        Raises:
            InputTooLongError: an input exceeds the window and ``truncate`` is False, or the
                segment a strategy keeps whole (the second, for ``"only_first"``) is too long.
        """
        if windows is not None:
            return self.encode_windows(texts, text_pairs, windows)
        try:
            encoding = tokenize(
                self._tokenizer,
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

    def window_settings(
        self, max_seq_len: int | None, doc_stride: int | None
    ) -> tuple[int, int]:
        """``(max_seq_len, doc_stride)`` resolved as the question-answering pipeline does:
        ``max_seq_len`` defaults to 384 and is capped by the model window, ``doc_stride``
        defaults to ``min(max_seq_len // 2, 128)``.

        Raises:
            InvalidInputError: ``doc_stride`` is larger than ``max_seq_len``.
        """
        max_seq_len = min(max_seq_len if max_seq_len is not None else 384, self.max_length)
        if doc_stride is None:
            doc_stride = min(max_seq_len // 2, 128)
        if doc_stride > max_seq_len:
            raise InvalidInputError(
                f"parameters.doc_stride ({doc_stride}) is larger than max_seq_len "
                f"({max_seq_len}, the model window capping it)"
            )
        return max_seq_len, doc_stride

    def encode_windows(
        self,
        texts: list[str],
        text_pairs: list[str] | None,
        windows: list[tuple[int | None, int | None]],
    ) -> EncodedInputs:
        """Encode (text, text_pair) pairs, the pair cut into overlapping windows.

        As ``pipeline("question-answering")`` does with a fast tokenizer: each input becomes
        one row per window of at most ``max_seq_len`` tokens (``truncation="only_second"``,
        ``stride=doc_stride`` tokens shared by consecutive windows). ``windows`` holds each
        input's ``(max_seq_len, doc_stride)`` (``None`` for the defaults). The result has
        offsets, ``owners``, ``sequence_ids`` and ``word_ids``.

        Raises:
            InvalidInputError: bad window settings, or a first text too long for a window.
        """
        if text_pairs is None or len(text_pairs) != len(texts) or len(windows) != len(texts):
            raise ValueError("encode_windows needs one text_pair and one window per text")
        settings: dict[tuple[int, int], list[int]] = {}
        for index, (max_seq_len, doc_stride) in enumerate(windows):
            settings.setdefault(self.window_settings(max_seq_len, doc_stride), []).append(index)
        per_input: list[list[tuple]] = [[] for _ in texts]
        for (max_seq_len, doc_stride), indices in settings.items():
            firsts = [texts[i] for i in indices]
            seconds = [text_pairs[i] for i in indices]
            self._check_windows(firsts, seconds, indices, max_seq_len, doc_stride)
            encoding = tokenize(
                self._tokenizer, firsts, seconds, truncation="only_second", max_length=max_seq_len,
                stride=doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True,
                return_attention_mask=False, return_token_type_ids=self._wants_token_types,
            )
            for row, sample in enumerate(encoding["overflow_to_sample_mapping"]):
                types = encoding["token_type_ids"][row] if self._wants_token_types else None
                per_input[indices[sample]].append((
                    encoding["input_ids"][row], types, encoding["offset_mapping"][row],
                    encoding.sequence_ids(row), encoding.word_ids(row),
                ))
        rows = [row for input_rows in per_input for row in input_rows]
        owners = np.fromiter(
            (i for i, input_rows in enumerate(per_input) for _ in input_rows), dtype=np.int32,
            count=len(rows),
        )
        lengths = np.fromiter((len(row[0]) for row in rows), dtype=np.int32, count=len(rows))
        total = int(lengths.sum())
        input_ids = _flat((row[0] for row in rows), np.int32, total)
        token_type_ids = (
            _flat((row[1] for row in rows), np.int8, total) if self._wants_token_types else None
        )
        offsets = np.fromiter(
            (i for row in rows for pair in row[2] for i in pair), dtype=np.int32, count=2 * total,
        ).reshape(total, 2)
        sequence_ids = _flat((row[3] for row in rows), np.int8, total)
        word_ids = _flat((row[4] for row in rows), np.int32, total)
        special = (sequence_ids < 0).astype(np.int8)
        return EncodedInputs(
            input_ids, lengths, token_type_ids, self.pad_token_id, offsets, special,
            owners, sequence_ids, word_ids,
        )

    def _check_windows(
        self, firsts: list[str], seconds: list[str], indices: list[int], max_seq_len: int,
        doc_stride: int,
    ) -> None:
        """Refuse what the fast tokenizer cannot split (it would panic, not raise)."""
        specials = self._tokenizer.num_special_tokens_to_add(pair=True)
        first_lengths = self.count_tokens(firsts, special_tokens=False)
        second_lengths = self.count_tokens(seconds, special_tokens=False)
        for index, first, second in zip(indices, first_lengths, second_lengths, strict=True):
            if first + second + specials <= max_seq_len:
                continue  # fits in one window: nothing to split
            room = max_seq_len - specials - first
            if room <= 0:
                raise InputTooLongError(
                    f"inputs[{index}]: the question has {first} tokens, too long for windows "
                    f"of max_seq_len={max_seq_len} tokens"
                )
            if doc_stride >= room:
                raise InvalidInputError(
                    f"inputs[{index}]: doc_stride ({doc_stride}) must be less than the "
                    f"{room} context tokens a window of max_seq_len={max_seq_len} holds "
                    "next to this question"
                )

    def count_tokens(self, texts: list[str], special_tokens: bool = True) -> list[int]:
        """Token counts of ``texts`` without truncation (with special tokens by default)."""
        encoded = tokenize(
            self._tokenizer, texts, truncation=False, add_special_tokens=special_tokens
        )
        return [len(ids) for ids in encoded["input_ids"]]

    def encode_ids(self, ids: list[list[int]], truncate: bool = True) -> EncodedInputs:
        """Token ids of this tokenizer's vocabulary, framed with the special tokens a text
        gets (e.g. ``[CLS] ... [SEP]``) and cut to the window like a text.

        Raises:
            InvalidInputError: an id outside the vocabulary, naming the input.
            InputTooLongError: an input exceeds the window and ``truncate`` is False.
        """
        prefix, suffix = self._special_frame
        room, vocabulary = self.max_length - len(prefix) - len(suffix), len(self._tokenizer)
        rows = []
        for index, row in enumerate(ids):
            unknown = next((t for t in row if not 0 <= t < vocabulary), None)
            if unknown is not None:
                raise InvalidInputError(
                    f"input[{index}]: token id {unknown} is not in the model's vocabulary "
                    f"(0 to {vocabulary - 1})"
                )
            if len(row) > room and not truncate:
                raise InputTooLongError(
                    f"input[{index}] has {len(row) + len(prefix) + len(suffix)} tokens, more "
                    f"than the model's limit of {self.max_length}; shorten it or allow "
                    "truncation"
                )
            rows.append([*prefix, *row[:room], *suffix])
        lengths = np.fromiter((len(row) for row in rows), dtype=np.int32, count=len(rows))
        total = int(lengths.sum())
        input_ids = _flat(rows, np.int32, total)
        # One sequence: every token is of type 0, as the tokenizer gives a single text.
        types = np.zeros(total, dtype=np.int8) if self._wants_token_types else None
        return EncodedInputs(input_ids, lengths, types, self.pad_token_id)

    @functools.cached_property
    def _special_frame(self) -> tuple[list[int], list[int]]:
        """The special tokens this tokenizer puts before and after a single text (found
        once, by encoding a probe text with and without them)."""
        content = tokenize(self._tokenizer, "a", add_special_tokens=False)["input_ids"]
        full = tokenize(self._tokenizer, "a")["input_ids"]
        for start in range(len(full) - len(content) + 1):
            if full[start : start + len(content)] == content:
                return full[:start], full[start + len(content):]
        raise ValueError("cannot locate a text among its special tokens")

    def token_details(
        self, texts: list[str], add_special_tokens: bool = True
    ) -> list[list[dict]]:
        """Per text its tokens as TEI's ``/tokenize`` lists them: ``id``, ``text`` (the
        token's span of the text, or the special token itself), ``special``, and the
        character offsets ``start``/``stop`` (``None`` for special tokens). Not truncated."""
        encoding = tokenize(
            self._tokenizer, texts, add_special_tokens=add_special_tokens, truncation=False,
            return_offsets_mapping=True, return_special_tokens_mask=True,
            return_attention_mask=False, return_token_type_ids=False,
        )
        details = []
        for text, ids, offsets, special in zip(
            texts, encoding["input_ids"], encoding["offset_mapping"],
            encoding["special_tokens_mask"], strict=True,
        ):
            names = self._tokenizer.convert_ids_to_tokens(ids)
            details.append([
                {"id": token, "text": name, "special": True, "start": None, "stop": None}
                if is_special else
                {"id": token, "text": text[start:stop], "special": False, "start": start,
                 "stop": stop}
                for token, name, (start, stop), is_special in zip(
                    ids, names, offsets, special, strict=True
                )
            ])
        return details

    def processed_tokens(self, texts: list[str]) -> int:
        """How many tokens the model reads for ``texts`` (truncated to the window)."""
        return sum(min(count, self.max_length) for count in self.count_tokens(texts))
