"""The tokenizer: texts (or pairs, or token ids) into :class:`EncodedInputs`, the model
window, and TEI's token details. Batching and padding are in ``serving/batching.py``."""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from serving.batching import EncodedInputs, flat
from serving.errors import InputTooLongError, InvalidInputError
from serving.models import model_window, resolve_model_source
from serving.windows import WindowedEncoding

if TYPE_CHECKING:
    from serving.load_settings import LoadSettings

# Hugging Face fast tokenizers apply truncation, stride and padding by setting them on the
# shared Rust tokenizer before each call: two threads encoding with different settings at
# once encode with each other's (wrong windows, or "Truncation error: Second sequence not
# provided"). Ray Serve runs sync methods in a thread pool and generation runs in threads,
# so every encode in this project goes through ``tokenize``.
_ENCODE_LOCK = threading.Lock()


def tokenize(tokenizer: Any, *args: Any, truncation_side: str | None = None,
             **kwargs: Any) -> Any:
    """``tokenizer(*args, **kwargs)``, one call at a time in this process; with
    ``truncation_side`` (``"left"``: keep the end of long inputs) for this call only."""
    with _ENCODE_LOCK:
        kept = tokenizer.truncation_side
        if truncation_side is None or truncation_side == kept:
            return tokenizer(*args, **kwargs)
        tokenizer.truncation_side = truncation_side
        try:
            return tokenizer(*args, **kwargs)
        finally:
            tokenizer.truncation_side = kept


class TextTokenizer(WindowedEncoding):
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
    def from_settings(cls, settings: LoadSettings) -> TextTokenizer:
        """Load the tokenizer of the model ``settings`` describe."""
        return cls.load(
            resolve_model_source(settings.model), revision=settings.revision,
            max_input_tokens=settings.max_input_tokens,
            trust_remote_code=settings.trust_remote_code,
        )

    def encode(
        self,
        texts: list[str],
        text_pairs: list[str] | None = None,
        truncate: bool | str = True,
        with_offsets: bool = False,
        windows: list[tuple[int | None, int | None]] | None = None,
        truncation_side: str = "right",
    ) -> EncodedInputs:
        """Tokenize ``texts`` (with optional second segments).

        ``truncate`` may also name a Hugging Face truncation strategy (``"only_first"``),
        passed to the tokenizer as is; ``True`` is ``"longest_first"``. ``with_offsets`` also
        returns each token's character offsets and the special-tokens mask.
        ``truncation_side`` ``"left"`` cuts long inputs at their start instead of their end.

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
                truncation_side=truncation_side,
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

    def _encode(self, *args: Any, **kwargs: Any) -> Any:
        return tokenize(self._tokenizer, *args, **kwargs)

    def count_tokens(self, texts: list[str], special_tokens: bool = True) -> list[int]:
        """Token counts of ``texts`` without truncation (with special tokens by default)."""
        encoded = tokenize(
            self._tokenizer, texts, truncation=False, add_special_tokens=special_tokens
        )
        return [len(ids) for ids in encoded["input_ids"]]

    def encode_ids(
        self, ids: list[list[int]], truncate: bool = True, add_special_tokens: bool = True,
        names: Sequence[str] | None = None, truncation_side: str = "right",
    ) -> EncodedInputs:
        """Token ids of this tokenizer's vocabulary, framed with the special tokens a text
        gets (e.g. ``[CLS] ... [SEP]``) and cut to the window like a text.

        ``add_special_tokens=False`` takes the ids as given (TEI's token-id inputs);
        ``names`` says how errors name each input (default ``input[i]``);
        ``truncation_side`` ``"left"`` keeps the end of a long input.

        Raises:
            InvalidInputError: an id outside the vocabulary, naming the input.
            InputTooLongError: an input exceeds the window and ``truncate`` is False.
        """
        prefix, suffix = self._special_frame if add_special_tokens else ([], [])
        room = self.max_length - len(prefix) - len(suffix)
        rows = []
        for index, row in enumerate(ids):
            where = names[index] if names is not None else f"input[{index}]"
            self._check_vocabulary(row, where)
            if len(row) > room and not truncate:
                raise InputTooLongError(
                    f"{where} has {len(row) + len(prefix) + len(suffix)} tokens, more "
                    f"than the model's limit of {self.max_length}; shorten it or allow "
                    "truncation"
                )
            kept = row[max(len(row) - room, 0):] if truncation_side == "left" else row[:room]
            rows.append([*prefix, *kept, *suffix])
        lengths = np.fromiter((len(row) for row in rows), dtype=np.int32, count=len(rows))
        total = int(lengths.sum())
        input_ids = flat(rows, np.int32, total)
        # One sequence: every token is of type 0, as the tokenizer gives a single text.
        types = np.zeros(total, dtype=np.int8) if self._wants_token_types else None
        return EncodedInputs(input_ids, lengths, types, self.pad_token_id)

    def _check_vocabulary(self, row: list[int], where: str) -> None:
        vocabulary = len(self._tokenizer)
        unknown = next((t for t in row if not 0 <= t < vocabulary), None)
        if unknown is not None:
            raise InvalidInputError(
                f"{where}: token id {unknown} is not in the model's vocabulary "
                f"(0 to {vocabulary - 1})"
            )

    def decode(
        self, ids: list[list[int]], skip_special_tokens: bool = True,
        names: Sequence[str] | None = None,
    ) -> list[str]:
        """Per input its text, as TEI's ``/decode`` gives it (the Rust tokenizer's decode).

        Raises:
            InvalidInputError: an empty input or an id outside the vocabulary, named as
                ``names`` say (default ``ids[i]``).
        """
        for index, row in enumerate(ids):
            where = names[index] if names is not None else f"ids[{index}]"
            if not row:
                raise InvalidInputError(f"{where} is an empty list of token ids")
            self._check_vocabulary(row, where)
        return list(self._tokenizer.backend_tokenizer.decode_batch(
            ids, skip_special_tokens=skip_special_tokens))

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
        token's span of the text, or the special token itself), ``special``, the character
        offsets ``start``/``stop`` and the UTF-8 byte offsets ``byte_start``/``byte_stop``
        (TEI's; all ``None`` for special tokens). Not truncated."""
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
            # byte_at[i]: where character i starts in the text's UTF-8 bytes
            byte_at = (range(len(text) + 1) if text.isascii() else np.cumsum(
                [0] + [len(c.encode("utf-8", "surrogatepass")) for c in text]).tolist())
            details.append([
                {"id": token, "text": name, "special": True, "start": None, "stop": None,
                 "byte_start": None, "byte_stop": None}
                if is_special else
                {"id": token, "text": text[start:stop], "special": False, "start": start,
                 "stop": stop, "byte_start": byte_at[start], "byte_stop": byte_at[stop]}
                for token, name, (start, stop), is_special in zip(
                    ids, names, offsets, special, strict=True
                )
            ])
        return details

    def processed_tokens(self, texts: list[str]) -> int:
        """How many tokens the model reads for ``texts`` (truncated to the window)."""
        return sum(min(count, self.max_length) for count in self.count_tokens(texts))
