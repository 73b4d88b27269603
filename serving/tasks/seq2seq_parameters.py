"""The parameters of summarization, translation and text2text-generation requests, and the
transformers 4.x defaults their pipelines resolved them against."""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, Field, field_validator, model_validator

from serving.tasks.base import TaskParameters
from serving.tasks.text_generation import MIN_LOGIT_DIVISOR

MAX_TOKENS = 2048
# The 4.x Text2TextGenerationPipeline's _default_generation_config.
PIPELINE_DEFAULTS = {"max_new_tokens": 256, "num_beams": 4}
GLOBAL_MAX_LENGTH = 20  # GenerationConfig's own default max_length
UNBOUNDED_LENGTH = 100_000  # a tokenizer model_max_length above this means "not set"
# transformers 4.x GenerationConfig defaults (5.x leaves most of them None): a setting at
# its default is one the 4.x pipeline fills from the model's generation config.
V4_DEFAULTS: dict[str, Any] = {
    "max_length": 20, "max_new_tokens": None, "min_length": 0, "min_new_tokens": None,
    "early_stopping": False, "do_sample": False, "num_beams": 1, "temperature": 1.0,
    "top_k": 50, "top_p": 1.0, "repetition_penalty": 1.0, "length_penalty": 1.0,
    "no_repeat_ngram_size": 0, "num_return_sequences": 1,
}


def is_v4_default(name: str, value: Any) -> bool:
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


GENERATE_KEYS = ("max_new_tokens", "max_length", "min_length", "num_beams", "do_sample",
                  "temperature", "top_k", "top_p", "repetition_penalty")
# What ``parameters.generate_parameters`` may set (the same settings as the parameters).
GENERATE_PARAMETERS = (*GENERATE_KEYS, "seed")
