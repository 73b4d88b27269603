"""token-classification (NER): the answers of ``transformers.pipeline("token-classification")``.

The post-processing ports the pipeline's ``gather_pre_entities``, ``aggregate`` and
``group_entities``: per token a softmax over the labels, then (by ``aggregation_strategy``)
words fused from sub-tokens and adjacent tokens of one entity grouped. ``start``/``end``
index the original text, from the fast tokenizer's character offsets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal, cast

import numpy as np
from pydantic import Field, field_validator

from serving.errors import InvalidInputError
from serving.tasks.base import RowTokens, Task, TaskParameters, TokenRow, own_parameters

Strategy = Literal["none", "simple", "first", "average", "max"]
_WORD_STRATEGIES = {"first", "average", "max"}


class TokenClassificationParameters(TaskParameters):
    aggregation_strategy: Strategy = Field(
        "none",
        description="How tokens become entities: 'none' (one per token), 'simple' (adjacent "
        "tokens of one entity grouped), or 'first'/'average'/'max' (words fused first).",
    )
    ignore_labels: list[str] = Field(
        default_factory=lambda: ["O"], max_length=1000,
        description="Labels left out of the answer (a string or a list).",
    )

    @field_validator("aggregation_strategy", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("ignore_labels", mode="before")
    @classmethod
    def _one_label(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


def _softmax(logits: np.ndarray) -> np.ndarray:
    # The pipeline's formula, in the logits' float32.
    maxes = np.max(logits, axis=-1, keepdims=True)
    shifted_exp = np.exp(logits - maxes)
    return shifted_exp / shifted_exp.sum(axis=-1, keepdims=True)


def _get_tag(entity_name: str) -> tuple[str, str]:
    if entity_name.startswith("B-"):
        return "B", entity_name[2:]
    if entity_name.startswith("I-"):
        return "I", entity_name[2:]
    return "I", entity_name  # not in B-/I- form: a continuation


class TokenClassification(Task):
    name: ClassVar[str] = "token-classification"
    tei_routes: ClassVar[frozenset[str]] = frozenset({"tokenize"})
    parameters = TokenClassificationParameters
    model_class = "AutoModelForTokenClassification"
    needs_offsets = True

    def __init__(self, tokenizer: Any, id2label: dict[int, str]) -> None:
        self.tokenizer = tokenizer
        self.id2label = {int(k): v for k, v in id2label.items()}
        backend = getattr(tokenizer, "_tokenizer", None)
        # A word-aware tokenizer (WordPiece, BPE with a continuing-subword prefix) marks
        # sub-words; others fall back to the pipeline's whitespace heuristic.
        self.word_aware = bool(
            backend and getattr(backend.model, "continuing_subword_prefix", None)
        )

    @classmethod
    def from_model(
        cls, model: Any, source: str, revision: str | None = None, pooling: str = "auto",
        normalize: bool | None = None,
    ) -> TokenClassification:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision, use_fast=True)
        return cls(tokenizer, model.config.id2label)

    def forward(self, engine: Any, batch: dict[str, Any]) -> list[np.ndarray]:
        """Per text: the logits of its tokens (padding cut off)."""
        logits = engine.forward(batch).logits.float().cpu().numpy()
        lengths = batch["attention_mask"].sum(dim=1).tolist()
        return [logits[i, :length] for i, length in enumerate(lengths)]

    def postprocess_request(
        self,
        outputs: list[np.ndarray],
        params: TaskParameters,
        layout: str,
        tokens: RowTokens | None = None,
        texts: Sequence[str] | None = None,
        text_pairs: Sequence[str] | None = None,
    ) -> list[Any]:
        if tokens is None or texts is None:
            raise InvalidInputError(
                "token-classification needs the texts and their token offsets"
            )
        params = own_parameters(params, TokenClassificationParameters)
        # Not windowed: the tokens are token rows (``EncodedInputs.token_rows``).
        rows = cast(Sequence[TokenRow], tokens)
        strategy = params.aggregation_strategy
        ignore = set(params.ignore_labels)
        answers = []
        for logits, (input_ids, offsets, special), text in zip(
            outputs, rows, texts, strict=True
        ):
            pre_entities = self._gather_pre_entities(
                text, input_ids, _softmax(logits), offsets, special, strategy
            )
            answers.append([
                self._plain(entity)
                for entity in self._aggregate(pre_entities, strategy)
                if entity.get("entity") not in ignore and entity.get("entity_group") not in ignore
            ])
        return answers

    # --- the pipeline's post-processing --------------------------------------------

    def _gather_pre_entities(
        self,
        sentence: str,
        input_ids: np.ndarray,
        scores: np.ndarray,
        offsets: np.ndarray,
        special_tokens_mask: np.ndarray,
        strategy: str,
    ) -> list[dict]:
        pre_entities = []
        for idx, token_scores in enumerate(scores):
            if special_tokens_mask[idx]:
                continue
            token_id = int(input_ids[idx])
            word = self.tokenizer.convert_ids_to_tokens(token_id)
            start, end = int(offsets[idx][0]), int(offsets[idx][1])
            word_ref = sentence[start:end]
            if self.word_aware:
                is_subword = len(word) != len(word_ref)
            else:
                is_subword = start > 0 and " " not in sentence[start - 1 : start + 1]
            if token_id == self.tokenizer.unk_token_id:
                word = word_ref
                is_subword = False
            pre_entities.append({
                "word": word, "scores": token_scores, "start": start, "end": end,
                "index": idx, "is_subword": is_subword,
            })
        return pre_entities

    def _aggregate(self, pre_entities: list[dict], strategy: str) -> list[dict]:
        if strategy in ("none", "simple"):
            entities = []
            for pre_entity in pre_entities:
                entity_idx = int(pre_entity["scores"].argmax())
                entities.append({
                    "entity": self.id2label[entity_idx],
                    "score": pre_entity["scores"][entity_idx],
                    "index": pre_entity["index"],
                    "word": pre_entity["word"],
                    "start": pre_entity["start"],
                    "end": pre_entity["end"],
                })
        else:
            entities = self._aggregate_words(pre_entities, strategy)
        if strategy == "none":
            return entities
        return self._group_entities(entities)

    def _aggregate_word(self, entities: list[dict], strategy: str) -> dict:
        word = self.tokenizer.convert_tokens_to_string([entity["word"] for entity in entities])
        if strategy == "first":
            scores = entities[0]["scores"]
        elif strategy == "max":
            scores = max(entities, key=lambda entity: entity["scores"].max())["scores"]
        else:  # average
            scores = np.nanmean(np.stack([entity["scores"] for entity in entities]), axis=0)
        idx = int(scores.argmax())
        return {
            "entity": self.id2label[idx],
            "score": scores[idx],
            "word": word,
            "start": entities[0]["start"],
            "end": entities[-1]["end"],
        }

    def _aggregate_words(self, entities: list[dict], strategy: str) -> list[dict]:
        """Fuse each word's sub-tokens into one entity so labels agree on word boundaries."""
        word_entities: list[dict] = []
        word_group: list[dict] | None = None
        for entity in entities:
            if word_group is None:
                word_group = [entity]
            elif entity["is_subword"]:
                word_group.append(entity)
            else:
                word_entities.append(self._aggregate_word(word_group, strategy))
                word_group = [entity]
        if word_group is not None:
            word_entities.append(self._aggregate_word(word_group, strategy))
        return word_entities

    def _group_sub_entities(self, entities: list[dict]) -> dict:
        scores = np.nanmean([entity["score"] for entity in entities])
        return {
            "entity_group": entities[0]["entity"].split("-", 1)[-1],
            "score": np.mean(scores),
            "word": self.tokenizer.convert_tokens_to_string([e["word"] for e in entities]),
            "start": entities[0]["start"],
            "end": entities[-1]["end"],
        }

    def _group_entities(self, entities: list[dict]) -> list[dict]:
        """Group adjacent entities of one type (a new B- tag starts a new group)."""
        groups: list[dict] = []
        pending: list[dict] = []
        for entity in entities:
            if not pending:
                pending.append(entity)
                continue
            bi, tag = _get_tag(entity["entity"])
            _, last_tag = _get_tag(pending[-1]["entity"])
            if tag == last_tag and bi != "B":
                pending.append(entity)
            else:
                groups.append(self._group_sub_entities(pending))
                pending = [entity]
        if pending:
            groups.append(self._group_sub_entities(pending))
        return groups

    @staticmethod
    def _plain(entity: dict) -> dict:
        """The entity with numpy numbers as Python ones (JSON-ready)."""
        return {
            key: float(value) if isinstance(value, np.floating)
            else int(value) if isinstance(value, np.integer) else value
            for key, value in entity.items()
        }
