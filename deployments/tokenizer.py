"""The tokenizer deployment: texts in, compact numpy token arrays out."""

from __future__ import annotations

import time

from ray import serve

from deployments.metrics import TokenizerMetrics
from serving.batching import EncodedInputs
from serving.load_settings import LoadSettings
from serving.models import resolve_model_source
from serving.prompts import Prompts
from serving.tokenization import TextTokenizer


class Tokenizing:
    """The tokenizer's remote methods: of the Tokenizer deployment, and of model replicas
    that tokenize themselves (``colocate_tokenizer``), which inherit them.

    The methods are ``async`` although they never await: Serve runs a sync method in a
    thread pool, and for a call this short (well under a millisecond for a short text) the
    hand-off to a thread and back cost more than the work (py-spy: thread start, queue and
    condition waits were most of the replica's time on a lone request). Encodes are
    serialized by one lock anyway (``serving.tokenization.tokenize``).
    """

    def _load_tokenizer(self, settings: LoadSettings) -> None:
        self._tokenizer = TextTokenizer.from_settings(settings)
        self._prompts = Prompts.read(resolve_model_source(settings.model), settings.revision)
        self._tokenizer_metrics = TokenizerMetrics(settings.name, settings.task)

    async def encode(
        self,
        texts: list[str],
        text_pairs: list[str] | None = None,
        truncate: bool | str = True,
        with_offsets: bool = False,
        windows: list[tuple[int | None, int | None]] | None = None,
        truncation_side: str = "right",
    ) -> EncodedInputs:
        """Tokenize; raises ``InputTooLongError`` when ``truncate`` is False and one is too long.

        ``with_offsets`` adds token character offsets and the special-tokens mask;
        ``windows`` (per pair ``(max_seq_len, doc_stride)``) splits long second segments into
        overlapping windows (question-answering); ``truncation_side`` ``"left"`` cuts long
        inputs at their start.
        """
        started = time.perf_counter()
        encoded = self._tokenizer.encode(
            texts, text_pairs, truncate, with_offsets=with_offsets, windows=windows,
            truncation_side=truncation_side,
        )
        self._tokenizer_metrics.tokenized(time.perf_counter() - started)
        return encoded

    async def processed_tokens(self, texts: list[str]) -> int:
        """Tokens the model reads for ``texts`` (truncated to the window)."""
        return self._tokenizer.processed_tokens(texts)

    async def encode_ids(
        self, ids: list[list[int]], truncate: bool = True, add_special_tokens: bool = True,
        names: list[str] | None = None, truncation_side: str = "right",
    ) -> EncodedInputs:
        """Token ids framed with the special tokens and cut to the window like texts
        (``add_special_tokens=False``: as given; ``names``: how errors name the inputs)."""
        return self._tokenizer.encode_ids(ids, truncate, add_special_tokens, names,
                                          truncation_side)

    async def decode(self, ids: list[list[int]], skip_special_tokens: bool = True,
                     names: list[str] | None = None) -> list[str]:
        """TEI ``/decode``: per input of token ids its text."""
        return self._tokenizer.decode(ids, skip_special_tokens, names)

    async def token_details(
        self, texts: list[str], add_special_tokens: bool = True
    ) -> list[list[dict]]:
        """TEI ``/tokenize`` entries of ``texts``."""
        return self._tokenizer.token_details(texts, add_special_tokens)

    def _tokenizer_details(self) -> dict:
        return {"max_input_length": self._tokenizer.max_length, **self._prompts.as_details()}


@serve.deployment
class Tokenizer(Tokenizing):
    """Encodes a request's texts in one batched call of a fast tokenizer."""

    def __init__(self, settings: LoadSettings) -> None:
        self._load_tokenizer(settings)

    async def details(self) -> dict:
        """What ``GET /info`` reports from the tokenizer: the model window."""
        return self._tokenizer_details()
