"""The tokenizer deployment: texts in, compact numpy token arrays out."""

from __future__ import annotations

from ray import serve

from serving.tokenization import EncodedInputs, TextTokenizer


@serve.deployment
class Tokenizer:
    """Encodes a request's texts in one batched call of a fast tokenizer."""

    def __init__(self, settings: dict) -> None:
        self._tokenizer = TextTokenizer.from_settings(settings)

    def encode(
        self,
        texts: list[str],
        text_pairs: list[str] | None = None,
        truncate: bool | str = True,
        with_offsets: bool = False,
        windows: list[tuple[int | None, int | None]] | None = None,
    ) -> EncodedInputs:
        """Tokenize; raises ``InputTooLongError`` when ``truncate`` is False and one is too long.

        ``with_offsets`` adds token character offsets and the special-tokens mask;
        ``windows`` (per pair ``(max_seq_len, doc_stride)``) splits long second segments into
        overlapping windows (question-answering).
        """
        return self._tokenizer.encode(
            texts, text_pairs, truncate, with_offsets=with_offsets, windows=windows
        )

    def processed_tokens(self, texts: list[str]) -> int:
        return self._tokenizer.processed_tokens(texts)
