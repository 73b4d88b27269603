"""Encoded texts as compact numpy arrays, and padding them back into batches (no model, no
tokenizer).

The tokenizer deployment sends :class:`EncodedInputs` through Ray's object store: one
flat ``int32`` array of all token ids plus per-text lengths, which pickles far smaller
and faster than a list of torch tensors. The model replica splits them into batches
(:meth:`EncodedInputs.chunks`), groups texts of similar length (:func:`length_buckets`)
and pads each group (:func:`pad_batch`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
        if (self.owners is None or self.offsets is None or self.sequence_ids is None
                or self.word_ids is None):
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


def flat(rows, dtype, count: int) -> np.ndarray:
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
