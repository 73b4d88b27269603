"""summarization, translation, text2text-generation: the answers of the transformers 4.x
pipelines (removed in transformers 5) from encoder-decoder models (torch only).

They generate like text-generation (the ``Generator`` deployment batches them, see
deployments/generator.py): :meth:`Seq2Seq.prepare` tokenizes (right padding is fine for
encoders; inputs longer than the window are cut unless ``truncation`` is false) and
:meth:`Seq2Seq.generate` groups rows by their resolved generation settings. The settings
are resolved as the 4.x pipeline does: its defaults (256 new tokens, 4 beams), overridden by
the model's generation config (a non-default ``max_length`` wins over the 256 new tokens),
then by ``config.task_specific_params[task]`` (its ``prefix`` is prepended to every input,
e.g. T5's "summarize: "), then by the request's parameters.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from serving.errors import InputTooLongError, InvalidInputError
from serving.tasks.base import TaskInputs
from serving.tasks.generative import GenerativeTask, cancel_criteria, padded
from serving.tasks.seq2seq_parameters import (
    GENERATE_KEYS,
    GLOBAL_MAX_LENGTH,
    PIPELINE_DEFAULTS,
    UNBOUNDED_LENGTH,
    Seq2SeqParameters,
    TranslationParameters,
    is_v4_default,
)
from serving.tasks.streaming import TokenStreamer
from serving.tokenization import tokenize


@dataclass(frozen=True)
class Source:
    """One tokenized input (prefix included), fitted to the encoder window."""

    text: str
    input_ids: tuple[int, ...]
    settings: str  # the task_specific_params key whose settings apply (or the task name)


class Seq2Seq(GenerativeTask):
    """Shared by the three tasks; subclasses set ``name`` and ``answer_key``."""

    name: ClassVar[str] = "text2text-generation"
    answer_key: ClassVar[str] = "generated_text"
    parameters = Seq2SeqParameters
    model_class = "AutoModelForSeq2SeqLM"
    streams: ClassVar[bool] = True

    def __init__(self, tokenizer: Any, model: Any) -> None:
        tokenizer.padding_side = "right"
        super().__init__(tokenizer, model)
        config = model.config
        limit = getattr(tokenizer, "model_max_length", None)
        positions = getattr(config, "max_position_embeddings", None)
        self.model_window: int | None = limit if limit and limit < UNBOUNDED_LENGTH else positions
        # Learned decoder positions (BART, Marian) bound the answer's length; T5 has none.
        self.decoder_window: int | None = (
            None if getattr(config, "model_type", "") in ("t5", "mt5", "umt5") else positions
        )
        self.pad_token_id = tokenizer.pad_token_id
        self.task_params: dict[str, dict] = dict(getattr(config, "task_specific_params", None)
                                                 or {})
        self.default_prefix: str | None = getattr(config, "prefix", None)
        self._model_config = copy.deepcopy(model.generation_config)
        self._base = self._pipeline_config(model)
        self._configs: dict[str, Any] = {}

    @classmethod
    def format(cls, results: list[Any], inputs: TaskInputs, params: Any = None) -> Any:
        """As the 4.x pipeline: ``[{key: text}]`` for one input, one dict per input else."""
        return list(results)

    # --- generation settings (as the 4.x pipeline resolves them) -----------------------

    def _pipeline_config(self, model: Any) -> Any:
        config = copy.deepcopy(model.generation_config)
        for key, value in PIPELINE_DEFAULTS.items():
            if is_v4_default(key, getattr(config, key, None)):
                setattr(config, key, value)
        if (config.max_new_tokens == PIPELINE_DEFAULTS["max_new_tokens"]
                and config.max_length is not None and config.max_length != GLOBAL_MAX_LENGTH):
            config.max_new_tokens = None  # the pipeline honours a model's own max_length
        return config

    def settings_key(self, params: Seq2SeqParameters) -> str:
        """Which ``task_specific_params`` entry applies (T5 translation: the first
        ``translation_*`` one, as ``pipeline("translation")``, or src/tgt_lang's)."""
        if self.name != "translation":
            return self.name
        src, tgt = getattr(params, "src_lang", None), getattr(params, "tgt_lang", None)
        if src is not None or tgt is not None:
            if src is None or tgt is None:
                raise InvalidInputError("parameters.tgt_lang: src_lang and tgt_lang go together")
            return f"translation_{src}_to_{tgt}"
        return next((key for key in self.task_params if key.startswith("translation")),
                    "translation")

    def prefix(self, key: str) -> str:
        return self.task_params.get(key, {}).get("prefix", self.default_prefix) or ""

    def _task_config(self, key: str) -> Any:
        if key not in self._configs:
            config = copy.deepcopy(self._base)
            extra = {k: v for k, v in self.task_params.get(key, {}).items() if k != "prefix"}
            config.update(**extra)
            # 4.x generate() then takes the model's own value for every setting left at the
            # global default (so task_specific_params' max_length=20 yields to the model's).
            for name, value in self._model_config.__dict__.items():
                if (not name.startswith("_") and not is_v4_default(name, value)
                        and is_v4_default(name, getattr(config, name, None))):
                    setattr(config, name, copy.deepcopy(value))
            if config.pad_token_id is None and self.pad_token_id is not None:
                config.pad_token_id = self.pad_token_id
            self._configs[key] = config
        return self._configs[key]

    def generation_config(self, source: Source, params: Seq2SeqParameters) -> Any:
        """The ``GenerationConfig`` of one input.

        Raises:
            InvalidInputError: a length beyond the decoder's positions, naming it.
        """
        config = copy.deepcopy(self._task_config(source.settings))
        given = {k: getattr(params, k) for k in GENERATE_KEYS
                 if k in params.model_fields_set
                 and (getattr(params, k) is not None or k == "max_new_tokens")}
        if "max_length" in given and "max_new_tokens" not in given:
            given["max_new_tokens"] = None  # max_length alone replaces the default
        if given.get("max_new_tokens") is not None:
            config.max_length = None  # explicit new tokens win (as in 4.x)
        config.update(**given)
        window = self.decoder_window
        if window is not None:
            for key, room in (("max_new_tokens", window - 1), ("max_length", window)):
                value = getattr(config, key)
                if value is None or value <= room:
                    continue
                if key in given:
                    raise InvalidInputError(
                        f"parameters.{key}: {value} exceeds the decoder window of this model; "
                        f"at most {room}"
                    )
                setattr(config, key, room)
        limit = config.max_new_tokens or config.max_length
        if "min_length" in given and limit and config.min_length > limit:
            raise InvalidInputError(
                f"parameters.min_length: longer than the answer may be ({limit} tokens)"
            )
        return config

    # --- request preparation (no model call) -----------------------------------------

    def prepare(self, texts: Sequence[str], params: Seq2SeqParameters) -> list[Source]:
        """Tokenize ``texts`` (prefix included), cut to the window unless ``truncation``
        is false.

        Raises:
            InputTooLongError: an input exceeds the window with ``truncation: false``.
            InvalidInputError: bad parameters (checked on the first input).
        """
        key = self.settings_key(params)
        prefix = self.prefix(key)
        full = [prefix + text for text in texts]
        encoded = tokenize(self.tokenizer, full, add_special_tokens=True)["input_ids"]
        sources = []
        for index, (text, ids) in enumerate(zip(full, encoded, strict=True)):
            if self.model_window is not None and len(ids) > self.model_window:
                if not params.truncation:
                    where = "inputs" if len(texts) == 1 else f"inputs[{index}]"
                    raise InputTooLongError(
                        f"{where} has {len(ids)} tokens, more than the model window of "
                        f"{self.model_window} tokens (truncation is false)"
                    )
                ids = tokenize(
                    self.tokenizer, text, truncation=True, max_length=self.model_window
                )["input_ids"]
            sources.append(Source(text, tuple(ids), key))
        if sources:
            self.generation_config(sources[0], params)  # errors before any generation
        return sources

    # --- generation --------------------------------------------------------------------

    def generate(
        self,
        model: Any,
        requests: Sequence[tuple[Sequence[Source], Seq2SeqParameters]],
        max_batch_size: int = 32,
    ) -> list[list[dict]]:
        """Answers (``{answer_key: text}`` per input) of several requests; rows share a
        ``generate()`` call only with identical settings (a seeded sampling request never
        shares one)."""
        def settings(source: Source, params: Seq2SeqParameters):
            config = self.generation_config(source, params)
            return config.to_json_string(use_diff=False), config, bool(config.do_sample)

        texts = self._generate_grouped(
            requests, settings,
            lambda sources, config, params: self._generate_rows(model, sources, config,
                                                                params.seed),
            max_batch_size,
        )
        return [
            [{self.answer_key: self._decode(texts[r, s], params)} for s in range(len(sources))]
            for r, (sources, params) in enumerate(requests)
        ]

    def _decode(self, ids: list[int], params: Seq2SeqParameters) -> str:
        return self.tokenizer.decode(
            ids, skip_special_tokens=True,
            clean_up_tokenization_spaces=params.clean_up_tokenization_spaces,
        )

    def _generate_rows(self, model: Any, sources: Sequence[Source], config: Any,
                       seed: int | None, **extra: Any) -> list[list[int]]:
        """The generated token ids of each row (decoded per request: see ``_decode``)."""
        pad = self.pad_token_id if self.pad_token_id is not None else 0
        batch = padded([s.input_ids for s in sources], pad, False, model.device)
        output = self._run_generate(model, batch, seed, bool(config.do_sample),
                                    generation_config=config, **extra)
        return [row.tolist() for row in output]

    def stream(self, model: Any, source: Source, params: Seq2SeqParameters,
               emit: Callable[[dict], None], cancelled: threading.Event | None = None) -> None:
        """Generate one input calling ``emit`` once per new token (TGI events, as
        text-generation's); the last carries ``generated_text``, the answer's text.

        Raises:
            InvalidInputError: the input's settings use beam search, which cannot stream.
        """
        config = self.generation_config(source, params)
        if config.num_beams > 1:
            raise InvalidInputError(
                f"parameters.num_beams: streaming needs num_beams=1 (this model's "
                f"{self.name} default is {config.num_beams} beams); send num_beams: 1"
            )
        cancelled = cancelled or threading.Event()
        streamer = TokenStreamer(self.tokenizer, [], emit, cancelled)
        (ids,) = self._generate_rows(model, [source], config, params.seed, streamer=streamer,
                                     stopping_criteria=cancel_criteria(cancelled))
        streamer.finish({"generated_text": self._decode(ids, params)})


class Text2TextGeneration(Seq2Seq):
    name: ClassVar[str] = "text2text-generation"
    answer_key: ClassVar[str] = "generated_text"


class Summarization(Seq2Seq):
    name: ClassVar[str] = "summarization"
    answer_key: ClassVar[str] = "summary_text"


class Translation(Seq2Seq):
    name: ClassVar[str] = "translation"
    answer_key: ClassVar[str] = "translation_text"
    parameters = TranslationParameters
