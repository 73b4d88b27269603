"""fill-mask: the answers of ``transformers.pipeline("fill-mask")``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, field_validator

from serving.errors import InvalidInputError
from serving.tasks.base import RowTokens, Task, TaskInputs, TaskParameters, own_parameters
from serving.tokenization import tokenize


class FillMaskParameters(TaskParameters):
    top_k: int = Field(5, ge=1, le=1000, description="Predictions per mask token.")
    targets: list[str] | None = Field(
        None, min_length=1, max_length=1000,
        description="Only score these candidate tokens (a string or a list).",
    )

    @field_validator("targets", mode="before")
    @classmethod
    def _one_target(cls, targets: Any) -> Any:
        return [targets] if isinstance(targets, str) else targets


class FillMask(Task):
    name: ClassVar[str] = "fill-mask"
    tei_routes: ClassVar[frozenset[str]] = frozenset({"tokenize"})
    parameters = FillMaskParameters
    model_class = "AutoModelForMaskedLM"
    # The mask token of BERT-like and of RoBERTa-like tokenizers: one of them is the mask.
    probe_inputs = "[MASK] <mask>"

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    @classmethod
    def from_model(
        cls, model: Any, source: str, revision: str | None = None, pooling: str = "auto",
        normalize: bool | None = None,
    ) -> FillMask:
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(source, revision=revision))

    def forward(self, engine: Any, batch: dict[str, Any]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per text: its token ids and the logits at its mask positions."""
        logits = engine.forward(batch).logits
        ids = batch["input_ids"]
        rows = []
        for i, length in enumerate(batch["attention_mask"].sum(dim=1).tolist()):
            row_ids = ids[i, :length]
            masked = (row_ids == self.tokenizer.mask_token_id).nonzero().squeeze(-1)
            rows.append((row_ids.cpu().numpy(), logits[i, masked].float().cpu().numpy()))
        return rows

    def postprocess_request(
        self,
        outputs: list[Any],
        params: TaskParameters,
        layout: str,
        tokens: RowTokens | None = None,
        texts: Sequence[str] | None = None,
        text_pairs: Sequence[str] | None = None,
    ) -> list[Any]:
        params = own_parameters(params, FillMaskParameters)
        for index, (_, mask_logits) in enumerate(outputs):
            if mask_logits.shape[0] == 0:
                raise InvalidInputError(
                    f"inputs[{index}] has no mask token; write {self.tokenizer.mask_token} "
                    "where a word should be predicted"
                )
        target_ids = self._target_ids(params.targets) if params.targets else None
        return [self._predict(ids, logits, params.top_k, target_ids) for ids, logits in outputs]

    def _predict(
        self, input_ids: np.ndarray, mask_logits: np.ndarray, top_k: int, target_ids: Any
    ) -> Any:
        import torch

        probs = torch.from_numpy(mask_logits).softmax(dim=-1)
        if target_ids is not None:
            probs = probs[..., target_ids]
            top_k = min(top_k, len(target_ids))
        values, predictions = probs.topk(min(top_k, probs.shape[-1]))  # never past the vocab
        masked_positions = np.flatnonzero(input_ids == self.tokenizer.mask_token_id)
        single_mask = len(masked_positions) == 1
        answers = []
        for position, row_values, row_predictions in zip(
            masked_positions, values.tolist(), predictions.tolist(), strict=True
        ):
            row = []
            for score, prediction in zip(row_values, row_predictions, strict=True):
                token = int(target_ids[prediction]) if target_ids is not None else prediction
                tokens = input_ids.copy()
                tokens[position] = token
                tokens = tokens[tokens != self.tokenizer.pad_token_id]
                row.append({
                    "score": score,
                    "token": token,
                    "token_str": self.tokenizer.decode([token]),
                    "sequence": self.tokenizer.decode(tokens, skip_special_tokens=single_mask),
                })
            answers.append(row)
        return answers[0] if single_mask else answers

    def _target_ids(self, targets: list[str]) -> np.ndarray:
        """Vocabulary ids of ``targets`` as the pipeline picks them (first sub-token of an
        unknown word; the same de-duplicated order)."""
        vocab = self.tokenizer.get_vocab()
        ids = []
        for target in targets:
            token_id = vocab.get(target)
            if token_id is None:
                pieces = tokenize(
                    self.tokenizer, target, add_special_tokens=False, max_length=1,
                    truncation=True,
                )["input_ids"]
                if not pieces:
                    continue
                token_id = pieces[0]
            ids.append(token_id)
        ids = list(set(ids))
        if not ids:
            raise InvalidInputError("parameters.targets: none of the targets is in the vocabulary")
        return np.array(ids)

    @classmethod
    def format(cls, results: list[Any], inputs: TaskInputs, params: Any = None) -> Any:
        return results[0] if inputs.single else results
