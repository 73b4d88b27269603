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
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import AliasChoices, Field, field_validator, model_validator

from serving.errors import InputTooLongError, InvalidInputError
from serving.tasks.base import Task, TaskInputs, TaskParameters
from serving.tasks.text_generation import MIN_LOGIT_DIVISOR
from serving.tokenization import tokenize

MAX_TOKENS = 2048
# The 4.x Text2TextGenerationPipeline's _default_generation_config.
PIPELINE_DEFAULTS = {"max_new_tokens": 256, "num_beams": 4}
GLOBAL_MAX_LENGTH = 20  # GenerationConfig's own default max_length
_UNBOUNDED = 100_000  # a tokenizer model_max_length above this means "not set"
# transformers 4.x GenerationConfig defaults (5.x leaves most of them None): a setting at
# its default is one the 4.x pipeline fills from the model's generation config.
V4_DEFAULTS: dict[str, Any] = {
    "max_length": 20, "max_new_tokens": None, "min_length": 0, "min_new_tokens": None,
    "early_stopping": False, "do_sample": False, "num_beams": 1, "temperature": 1.0,
    "top_k": 50, "top_p": 1.0, "repetition_penalty": 1.0, "length_penalty": 1.0,
    "no_repeat_ngram_size": 0, "num_return_sequences": 1,
}


def _is_default(name: str, value: Any) -> bool:
    return value is None or (name in V4_DEFAULTS and value == V4_DEFAULTS[name])


class Seq2SeqParameters(TaskParameters):
    max_new_tokens: int | None = Field(
        None, ge=1, le=MAX_TOKENS,
        description="Tokens to generate; default from the model (else 256, as the pipeline).",
    )
    max_length: int | None = Field(
        None, ge=1, le=MAX_TOKENS,
        description="Longest answer in tokens; alone, it replaces the default max_new_tokens.",
    )
    min_length: int | None = Field(None, ge=0, le=MAX_TOKENS, description="Shortest answer.")
    num_beams: int | None = Field(
        None, ge=1, le=16, description="Beam search width; default from the model, else 4."
    )
    do_sample: bool | None = Field(None, description="Sample instead of greedy / beam search.")
    temperature: float | None = Field(
        None, ge=MIN_LOGIT_DIVISOR, le=100, description="Sampling temperature."
    )
    top_k: int | None = Field(None, ge=1, le=100_000, description="Sample among the k best.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling mass.")
    repetition_penalty: float | None = Field(
        None, ge=MIN_LOGIT_DIVISOR, le=100, description="Penalty on repeated tokens (1: none)."
    )
    seed: int | None = Field(
        None, ge=0, le=2**63 - 1,
        description="With do_sample: the same request sent alone gets the same answer.",
    )
    truncation: bool = Field(
        True,
        validation_alias=AliasChoices("truncation", "truncate"),
        description="Cut inputs longer than the model window; false rejects them with 422. "
        "The Inference API's strategy names work too: 'do_not_truncate' is false, "
        "'longest_first' and 'only_first' are true.",
    )
    clean_up_tokenization_spaces: bool = Field(
        False, description="Remove spaces before punctuation in the answer (as the "
        "tokenizer's decode does; the 4.x pipelines' default is false).",
    )

    @model_validator(mode="before")
    @classmethod
    def _flatten_generate_parameters(cls, data: Any) -> Any:
        """The Inference API's ``generate_parameters`` object (huggingface_hub's
        InferenceClient sends it) sets the same settings as the top-level parameters."""
        if not isinstance(data, dict) or "generate_parameters" not in data:
            return data
        data = dict(data)
        nested = data.pop("generate_parameters")
        if nested is None:
            return data
        if not isinstance(nested, dict):
            raise ValueError("generate_parameters must be an object")
        for key, value in nested.items():
            if key not in GENERATE_PARAMETERS:
                raise ValueError(
                    f"generate_parameters.{key} is not supported; supported: "
                    f"{', '.join(GENERATE_PARAMETERS)}"
                )
            if key in data and data[key] != value:
                raise ValueError(f"generate_parameters.{key} differs from parameters.{key}")
            data[key] = value
        return data

    @field_validator("truncation", mode="before")
    @classmethod
    def _strategy(cls, value: Any) -> Any:
        if value in ("longest_first", "only_first"):
            return True
        if value == "do_not_truncate":
            return False
        if value == "only_second":
            raise ValueError("'only_second' needs a second segment; these inputs have one")
        return value


class TranslationParameters(Seq2SeqParameters):
    src_lang: str | None = Field(
        None, min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$",
        description="Source language: with tgt_lang, picks task_specific_params "
        "translation_{src_lang}_to_{tgt_lang} (T5's prefix).",
    )
    tgt_lang: str | None = Field(
        None, min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$",
        description="Target language (see src_lang).",
    )


_GENERATE_KEYS = ("max_new_tokens", "max_length", "min_length", "num_beams", "do_sample",
                  "temperature", "top_k", "top_p", "repetition_penalty")
# What ``parameters.generate_parameters`` may set (the same settings as the parameters).
GENERATE_PARAMETERS = (*_GENERATE_KEYS, "seed")


@dataclass(frozen=True)
class Source:
    """One tokenized input (prefix included), fitted to the encoder window."""

    text: str
    input_ids: tuple[int, ...]
    settings: str  # the task_specific_params key whose settings apply (or the task name)


class Seq2Seq(Task):
    """Shared by the three tasks; subclasses set ``name`` and ``answer_key``."""

    name: ClassVar[str] = "text2text-generation"
    answer_key: ClassVar[str] = "generated_text"
    parameters = Seq2SeqParameters
    model_class = "AutoModelForSeq2SeqLM"
    generates: ClassVar[bool] = True  # served by the Generator deployment
    probe_parameters: ClassVar[dict[str, Any]] = {"max_new_tokens": 1}

    def __init__(self, tokenizer: Any, model: Any) -> None:
        tokenizer.padding_side = "right"
        self.tokenizer = tokenizer
        config = model.config
        limit = getattr(tokenizer, "model_max_length", None)
        positions = getattr(config, "max_position_embeddings", None)
        self.window: int | None = limit if limit and limit < _UNBOUNDED else positions
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
        self._lock = threading.Lock()  # seeded sampling sets torch's global RNG

    @classmethod
    def from_model(cls, model: Any, source: str, revision: str | None = None,
                   **_: Any) -> Seq2Seq:
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(source, revision=revision), model)

    def forward(self, model: Any, batch: dict[str, Any]) -> list[Any]:
        raise NotImplementedError(f"{self.name} runs through Seq2Seq.generate")

    @classmethod
    def format(cls, results: list[Any], inputs: TaskInputs, params: Any = None) -> Any:
        """As the 4.x pipeline: ``[{key: text}]`` for one input, one dict per input else."""
        return list(results)

    # --- generation settings (as the 4.x pipeline resolves them) -----------------------

    def _pipeline_config(self, model: Any) -> Any:
        config = copy.deepcopy(model.generation_config)
        for key, value in PIPELINE_DEFAULTS.items():
            if _is_default(key, getattr(config, key, None)):
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
                if (not name.startswith("_") and not _is_default(name, value)
                        and _is_default(name, getattr(config, name, None))):
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
        given = {k: getattr(params, k) for k in _GENERATE_KEYS
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
            if self.window is not None and len(ids) > self.window:
                if not params.truncation:
                    where = "inputs" if len(texts) == 1 else f"inputs[{index}]"
                    raise InputTooLongError(
                        f"{where} has {len(ids)} tokens, more than the model window of "
                        f"{self.window} tokens (truncation is false)"
                    )
                ids = tokenize(
                    self.tokenizer, text, truncation=True, max_length=self.window
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
        groups: dict[Hashable, list[tuple[int, int]]] = defaultdict(list)
        configs: dict[Hashable, Any] = {}
        for r, (sources, params) in enumerate(requests):
            for s, source in enumerate(sources):
                config = self.generation_config(source, params)
                key: Hashable = config.to_json_string(use_diff=False)
                if config.do_sample and params.seed is not None:
                    key = (key, "seeded request", r)
                configs[key] = (config, params.seed)
                groups[key].append((r, s))
        texts: dict[tuple[int, int], list[int]] = {}
        for key, rows in groups.items():
            config, seed = configs[key]
            for start in range(0, len(rows), max_batch_size):
                chunk = rows[start : start + max_batch_size]
                sources = [requests[r][0][s] for r, s in chunk]
                texts.update(zip(chunk, self._generate_rows(model, sources, config, seed),
                                 strict=True))
        return [
            [{self.answer_key: self._decode(texts[r, s], params)} for s in range(len(sources))]
            for r, (sources, params) in enumerate(requests)
        ]

    def _decode(self, ids: list[int], params: Seq2SeqParameters) -> str:
        return self.tokenizer.decode(
            ids, skip_special_tokens=True,
            clean_up_tokenization_spaces=params.clean_up_tokenization_spaces,
        )

    def _batch(self, sources: Sequence[Source], device: Any) -> dict[str, Any]:
        """Right-padded ``input_ids`` and ``attention_mask`` tensors."""
        import torch

        width = max(len(s.input_ids) for s in sources)
        pad = self.pad_token_id if self.pad_token_id is not None else 0
        ids = torch.full((len(sources), width), pad, dtype=torch.long)
        mask = torch.zeros((len(sources), width), dtype=torch.long)
        for i, source in enumerate(sources):
            ids[i, : len(source.input_ids)] = torch.tensor(source.input_ids, dtype=torch.long)
            mask[i, : len(source.input_ids)] = 1
        return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}

    def _generate_rows(self, model: Any, sources: Sequence[Source], config: Any,
                       seed: int | None) -> list[list[int]]:
        """The generated token ids of each row (decoded per request: see ``_decode``)."""
        import torch

        from serving.tasks.text_generation import _rng_devices

        batch = self._batch(sources, model.device)
        with self._lock, torch.random.fork_rng(devices=_rng_devices(model)):
            if config.do_sample and seed is not None:
                torch.manual_seed(seed)
            with torch.inference_mode():
                output = model.generate(**batch, generation_config=config)
        return [row.tolist() for row in output]

    def stream(self, *args: Any, **kwargs: Any) -> None:
        raise InvalidInputError(f"{self.name} cannot stream; streaming is for text-generation")


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
