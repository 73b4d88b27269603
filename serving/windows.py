"""Long second segments cut into overlapping windows, as the question-answering pipeline
does with a fast tokenizer: one model row per window, each naming its input."""

from __future__ import annotations

from typing import Any

import numpy as np

from serving.batching import EncodedInputs, flat
from serving.errors import InputTooLongError, InvalidInputError


class WindowedEncoding:
    """Window encoding for :class:`serving.tokenization.TextTokenizer`."""

    _tokenizer: Any
    max_length: int
    pad_token_id: int
    _wants_token_types: bool

    def count_tokens(self, texts: list[str], special_tokens: bool = True) -> list[int]:
        raise NotImplementedError

    def _encode(self, *args: Any, **kwargs: Any) -> Any:
        """The wrapped tokenizer's call (under the process's encode lock)."""
        raise NotImplementedError

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
            encoding = self._encode(
                firsts, seconds, truncation="only_second", max_length=max_seq_len,
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
        input_ids = flat((row[0] for row in rows), np.int32, total)
        token_type_ids = (
            flat((row[1] for row in rows), np.int8, total) if self._wants_token_types else None
        )
        offsets = np.fromiter(
            (i for row in rows for pair in row[2] for i in pair), dtype=np.int32, count=2 * total,
        ).reshape(total, 2)
        sequence_ids = flat((row[3] for row in rows), np.int8, total)
        word_ids = flat((row[4] for row in rows), np.int32, total)
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
