"""question-answering (extractive): the answers of the transformers 4.x pipeline.

transformers 5 removed ``pipeline("question-answering")``; this ports its fast-tokenizer
path (4.57): the context is split into overlapping windows (``max_seq_len`` tokens each,
``doc_stride`` shared), every window's start/end logits are softmaxed over its context
tokens, spans are scored ``p(start) * p(end)``, aligned to words, merged across windows
(answers with the same text, case-insensitively, add their scores) and the ``top_k`` best
returned. ``start``/``end`` index the original context.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, cast

import numpy as np
from pydantic import Field, StrictBool, StrictInt, model_validator

from serving.batching import WindowRow
from serving.errors import InvalidInputError
from serving.tasks.base import (
    RowTokens,
    Task,
    TaskInputs,
    TaskParameters,
    check_text,
    own_parameters,
)

LAYOUT = "question-answering"
# Bound of the token-count parameters: far above any model window (values in between are
# capped by it), and numpy's int64 never overflows (a 10**30 max_answer_len did: a 500).
MAX_TOKENS = 1_000_000


class QuestionAnsweringParameters(TaskParameters):
    top_k: StrictInt = Field(1, ge=1, le=1000, description="Number of answers to return.")
    doc_stride: StrictInt | None = Field(
        None, ge=0, le=MAX_TOKENS,
        description="Tokens shared by consecutive windows of a long context "
        "(default min(max_seq_len // 2, 128)).",
    )
    max_answer_len: StrictInt = Field(
        15, ge=1, le=MAX_TOKENS, description="Longest answer, in tokens."
    )
    max_seq_len: StrictInt | None = Field(
        None, ge=8, le=MAX_TOKENS,
        description="Tokens per window, question included (default 384, capped by the "
        "model window).",
    )
    max_question_len: StrictInt = Field(
        64, ge=1, le=MAX_TOKENS,
        description="Accepted for compatibility; like the pipeline with a fast tokenizer, "
        "questions are not truncated.",
    )
    handle_impossible_answer: StrictBool = Field(
        False, description="Also consider the empty answer (score from the [CLS] token)."
    )
    align_to_words: StrictBool = Field(
        True, description="Widen answers to whole words (false keeps token offsets)."
    )

    @model_validator(mode="after")
    def _stride_fits(self) -> QuestionAnsweringParameters:
        if (self.doc_stride is not None and self.max_seq_len is not None
                and self.doc_stride > self.max_seq_len):
            raise ValueError(
                f"doc_stride ({self.doc_stride}) is larger than max_seq_len ({self.max_seq_len})"
            )
        return self


def decode_spans(
    start: np.ndarray, end: np.ndarray, topk: int, max_answer_len: int,
    undesired_tokens: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pipeline's ``decode_spans``: the ``topk`` best (start, end) token spans."""
    if start.ndim == 1:
        start = start[None]
    if end.ndim == 1:
        end = end[None]
    outer = np.matmul(np.expand_dims(start, -1), np.expand_dims(end, 1))
    candidates = np.tril(np.triu(outer), max_answer_len - 1)
    scores_flat = candidates.flatten()
    idx_sort: np.ndarray
    if topk == 1:
        idx_sort = np.array([np.argmax(scores_flat)])
    elif len(scores_flat) < topk:
        idx_sort = np.argsort(-scores_flat)
    else:
        idx = np.argpartition(-scores_flat, topk)[0:topk]
        idx_sort = idx[np.argsort(-scores_flat[idx])]
    starts, ends = np.unravel_index(idx_sort, candidates.shape)[1:]
    desired_spans = np.isin(starts, undesired_tokens.nonzero()) & np.isin(
        ends, undesired_tokens.nonzero()
    )
    starts = starts[desired_spans]
    ends = ends[desired_spans]
    scores = candidates[0, starts, ends]
    return starts, ends, scores


def select_starts_ends(
    start: np.ndarray, end: np.ndarray, p_mask: np.ndarray, attention_mask: np.ndarray,
    min_null_score: float, top_k: int, handle_impossible_answer: bool, max_answer_len: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The pipeline's ``select_starts_ends`` on one window (``start``/``end``: [1, tokens])."""
    undesired_tokens = np.abs(np.array(p_mask) - 1)
    undesired_tokens = undesired_tokens & attention_mask
    undesired_tokens_mask = undesired_tokens == 0.0
    start = np.where(undesired_tokens_mask, -10000.0, start)
    end = np.where(undesired_tokens_mask, -10000.0, end)
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start = start / start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end = end / end.sum()
    if handle_impossible_answer:
        min_null_score = min(min_null_score, (start[0, 0] * end[0, 0]).item())
    start[0, 0] = end[0, 0] = 0.0
    starts, ends, scores = decode_spans(start, end, top_k, max_answer_len, undesired_tokens)
    return starts, ends, scores, min_null_score


def _word_chars(offsets: np.ndarray, sequence_ids: np.ndarray, word_ids: np.ndarray,
                word: int) -> tuple[int, int]:
    """``Encoding.word_to_chars(word, sequence_index=1)`` within one window."""
    tokens = np.flatnonzero((sequence_ids == 1) & (word_ids == word))
    if not len(tokens):
        raise LookupError(word)
    return int(offsets[tokens[0]][0]), int(offsets[tokens[-1]][1])


class QuestionAnswering(Task):
    name: ClassVar[str] = "question-answering"
    tei_routes: ClassVar[frozenset[str]] = frozenset({"tokenize"})
    parameters = QuestionAnsweringParameters
    model_class = "AutoModelForQuestionAnswering"
    accepts_pairs = True
    needs_offsets = True
    windowed = True
    probe_inputs: ClassVar[Any] = {"question": "health check?", "context": "health check"}

    def __init__(self, cls_token_id: int | None) -> None:
        self.cls_token_id = cls_token_id

    @classmethod
    def from_model(
        cls, model: Any, source: str, revision: str | None = None, pooling: str = "auto",
        normalize: bool | None = None,
    ) -> QuestionAnswering:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision, use_fast=True)
        if tokenizer.padding_side != "right":
            # The pipeline then puts the context first; not supported here.
            raise ValueError("question-answering needs a tokenizer padding on the right")
        return cls(tokenizer.cls_token_id)

    @classmethod
    def window(cls, params: TaskParameters) -> tuple[int | None, int | None]:
        if not isinstance(params, QuestionAnsweringParameters):
            return (None, None)
        return (params.max_seq_len, params.doc_stride)

    @classmethod
    def parse_inputs(
        cls, inputs: Any, max_inputs: int, params: TaskParameters | None = None
    ) -> TaskInputs:
        """``{"question", "context"}`` or a list of them: questions as ``texts``, contexts
        as ``text_pairs``."""
        items, single = cls._items(inputs, max_inputs)
        questions, contexts = [], []
        for i, item in enumerate(items):
            where = "inputs" if single else f"inputs[{i}]"
            if not isinstance(item, dict) or set(item) != {"question", "context"}:
                raise InvalidInputError(
                    f"{where} must be an object with 'question' and 'context'"
                )
            questions.append(check_text(item["question"], f"{where}.question"))
            contexts.append(check_text(item["context"], f"{where}.context"))
        return TaskInputs(questions, contexts, single, layout=LAYOUT)

    def forward(self, engine: Any, batch: dict[str, Any]) -> list[np.ndarray]:
        """Per row: its start and end logits, ``[2, tokens]`` (padding cut off)."""
        output = engine.forward(batch)
        start = output.start_logits.float().cpu().numpy()
        end = output.end_logits.float().cpu().numpy()
        lengths = batch["attention_mask"].sum(dim=1).tolist()
        return [np.stack([start[i, :n], end[i, :n]]) for i, n in enumerate(lengths)]

    def postprocess_request(
        self,
        outputs: list[np.ndarray],
        params: TaskParameters,
        layout: str,
        tokens: RowTokens | None = None,
        texts: Sequence[str] | None = None,
        text_pairs: Sequence[str] | None = None,
    ) -> list[Any]:
        if tokens is None or text_pairs is None:
            raise InvalidInputError("question-answering needs the contexts and their windows")
        params = own_parameters(params, QuestionAnsweringParameters)
        # A windowed task's tokens are WindowRows (``EncodedInputs.window_rows``).
        window_rows = cast(Sequence[WindowRow], tokens)
        windows: list[list[tuple[np.ndarray, WindowRow]]] = []
        owner = None
        for logits, row in zip(outputs, window_rows, strict=True):
            if row.owner != owner:
                windows.append([])
                owner = row.owner
            windows[-1].append((logits, row))
        if len(windows) != len(text_pairs):
            raise ValueError(f"{len(windows)} inputs windowed, {len(text_pairs)} contexts")
        answers = []
        for context, rows in zip(text_pairs, windows, strict=True):
            found = self._answers(context, rows, params)
            answers.append(found[0] if params.top_k == 1 and found else found)
        return answers

    def _answers(
        self, context: str, rows: list[tuple[np.ndarray, WindowRow]],
        params: QuestionAnsweringParameters,
    ) -> list[dict[str, Any]]:
        """The pipeline's ``postprocess`` for one input's windows."""
        min_null_score = 1000000.0
        answers: list[dict] = []
        pre_topk = params.top_k * 2 + 10 if params.align_to_words else params.top_k
        for logits, row in rows:
            p_mask = row.sequence_ids != 1
            if self.cls_token_id is not None:
                p_mask[row.input_ids == self.cls_token_id] = False
            # [1, tokens] like the pipeline's tensors (``nonzero`` of a 2-D mask matters).
            attention_mask = np.ones((1, len(p_mask)), dtype=np.int64)
            starts, ends, scores, min_null_score = select_starts_ends(
                logits[0][None], logits[1][None], p_mask[None], attention_mask, min_null_score,
                pre_topk, params.handle_impossible_answer, params.max_answer_len,
            )
            for s, e, score in zip(starts, ends, scores, strict=True):
                start_index, end_index = self._indices(row, int(s), int(e), params.align_to_words)
                target = context[start_index:end_index]
                same = next(
                    (a for a in answers if a["answer"].lower() == target.lower()), None
                )
                if same is not None:
                    same["score"] += score.item()
                else:
                    answers.append({"score": score.item(), "start": start_index,
                                    "end": end_index, "answer": target})
        if params.handle_impossible_answer:
            answers.append({"score": min_null_score, "start": 0, "end": 0, "answer": ""})
        return sorted(answers, key=lambda x: x["score"], reverse=True)[: params.top_k]

    @staticmethod
    def _indices(row: WindowRow, s: int, e: int, align_to_words: bool) -> tuple[int, int]:
        """The pipeline's ``get_indices``: character span of tokens ``s``..``e``."""
        if align_to_words:
            try:
                start_word, end_word = int(row.word_ids[s]), int(row.word_ids[e])
                if start_word < 0 or end_word < 0:
                    raise LookupError("no word")
                start_index = _word_chars(row.offsets, row.sequence_ids, row.word_ids,
                                          start_word)[0]
                end_index = _word_chars(row.offsets, row.sequence_ids, row.word_ids, end_word)[1]
                return start_index, end_index
            except LookupError:
                pass  # as the pipeline: keep to the token offsets
        return int(row.offsets[s][0]), int(row.offsets[e][1])
