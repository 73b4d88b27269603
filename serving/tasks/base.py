"""The contract every task implements: parse inputs, forward a batch, post-process.

A task class knows, without any model loaded, how to validate a request's inputs and
parameters (the ingress uses that); an instance, built next to a loaded model, runs the
forward pass on a padded batch and turns raw outputs into the answer of one input.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from serving.batching import WindowRow
from serving.errors import InvalidInputError
from serving.schemas.text import text_problem
from serving.tasks.parameters import TaskParameters, TruncatedEitherSide, own_parameters

# The parameter classes live in serving/tasks/parameters.py; tasks import them from here too.
__all__ = ["RowTokens", "Slice", "Task", "TaskInputs", "TaskParameters", "TokenRow",
           "TruncatedEitherSide", "check_text", "own_parameters"]

if TYPE_CHECKING:
    from serving.engines import Engine
    from serving.prompts import Prompts

# One text's tokens as ``EncodedInputs.token_rows`` gives them: input_ids, (start, end)
# character offsets, special-tokens mask.
TokenRow = tuple[np.ndarray, np.ndarray, np.ndarray]
# What ``Task.postprocess_request`` receives as ``tokens=``: per row a TokenRow, or a
# WindowRow (``EncodedInputs.window_rows``) for a windowed task.
RowTokens = Sequence[TokenRow] | Sequence[WindowRow]

# Whitespace and C0/C1 control characters: a text made only of them has nothing to read.
_UNREADABLE = re.compile(r"[\s\x00-\x1f\x7f-\x9f]*")


@dataclass(frozen=True)
class TaskInputs:
    """Request inputs normalised to lists, remembering whether one text was sent.

    ``layout`` tells the task how the rows of this request become answers: ``"texts"`` is
    one answer per text; tasks define others (``"similarity"``: the first text against the
    rest).
    """

    texts: list[str]
    text_pairs: list[str] | None
    single: bool
    layout: str = "texts"
    groups: tuple[int, ...] = ()  # texts per answer, when answers span several texts


@dataclass(frozen=True)
class Slice:
    """One request's share of a merged model call: its rows, parameters and layout.

    ``texts`` (the request's input texts) and ``text_pairs`` (their second segments, if
    any) are filled only for tasks that set :attr:`Task.needs_offsets`. ``count`` counts
    inputs: with :attr:`Task.windowed` tasks an input may span several rows.
    """

    count: int
    params: TaskParameters
    layout: str = "texts"
    texts: tuple[str, ...] | None = None
    text_pairs: tuple[str, ...] | None = None


def check_text(text: Any, where: str) -> str:
    """``text`` if it is a string with something to read, else an InvalidInputError naming
    ``where``: blank, only control characters (tokenizers drop them), a lone surrogate or a
    NUL character (see :func:`serving.schemas.text_problem`)."""
    if not isinstance(text, str):
        raise InvalidInputError(f"{where} must be a string, got {type(text).__name__}")
    if not text.strip():
        raise InvalidInputError(f"{where} is empty")
    problem = text_problem(text)
    if problem is not None:
        raise InvalidInputError(f"{where} {problem}")
    if _UNREADABLE.fullmatch(text):
        raise InvalidInputError(f"{where} is empty (only whitespace and control characters)")
    return text


class Task:
    """Base class; subclasses set the class attributes and override the hooks.

    The class attributes are the task's capabilities: what the deployments and the API
    routes ask of a task instead of testing its name.
    """

    name: ClassVar[str]
    parameters: ClassVar[type[TaskParameters]] = TaskParameters
    model_class: ClassVar[str] = "AutoModel"  # the transformers Auto class to load
    accepts_pairs: ClassVar[bool] = False
    # What /health sends to check that a model answers.
    probe_inputs: ClassVar[Any] = "health check"
    probe_parameters: ClassVar[dict[str, Any]] = {}
    # Whether the task runs ``model.generate`` (a :class:`GenerativeTask`, served by the
    # Generator deployment, which tokenizes, generates and decodes itself).
    generates: ClassVar[bool] = False
    # Whether one prompt can be answered token by token (``GenerativeTask.stream``).
    streams: ClassVar[bool] = False
    # Whether post-processing needs each token's character offsets, the special-tokens mask
    # and the input texts: the tokenizer then encodes ``with_offsets`` and
    # ``postprocess_request`` also receives ``tokens=`` (per row: input_ids, offsets,
    # special_tokens_mask) and ``texts=``.
    needs_offsets: ClassVar[bool] = False
    # Whether a long second segment is split into overlapping windows, several model rows
    # per input (question-answering): the tokenizer encodes with ``windows=`` (per input
    # :meth:`window` of its parameters) and ``postprocess_request`` receives ``tokens=`` as
    # :class:`serving.batching.WindowRow`s (each naming its input) and ``text_pairs=``.
    windowed: ClassVar[bool] = False
    # The Text Embeddings Inference routes (``/embed``, ``/predict``...) this task answers.
    tei_routes: ClassVar[frozenset[str]] = frozenset()
    # Whether texts take the model's sentence-transformers prompts (:meth:`prompted`).
    takes_prompts: ClassVar[bool] = False

    @classmethod
    def from_model(
        cls, model: Any, source: str, revision: str | None = None, pooling: str = "auto",
        normalize: bool | None = None,
    ) -> Task:
        """The task instance for a loaded Hugging Face ``model`` (read from ``source``, a
        local directory or Hub id, at ``revision``); ``pooling`` and ``normalize`` are the
        model's feature-extraction settings (see ``LoadSettings``)."""
        return cls()

    @classmethod
    def model_class_for(cls, source: str, revision: str | None = None,
                        pooling: str = "auto") -> str:
        """The transformers Auto class to load for the model at ``source`` (what the engines
        load): :attr:`model_class`, unless the model's files ask for another (a SPLADE
        feature-extraction model is a masked LM). ``pooling`` is ``LoadSettings.pooling``.

        Raises:
            ValueError: the model's files describe something this task cannot serve.
        """
        return cls.model_class

    @classmethod
    def window(cls, params: TaskParameters) -> tuple[int | None, int | None]:
        """``(max_seq_len, doc_stride)`` of a windowed task's inputs (``None``: defaults)."""
        return (None, None)

    @classmethod
    def parse_inputs(
        cls, inputs: Any, max_inputs: int, params: TaskParameters | None = None
    ) -> TaskInputs:
        """Validate ``inputs`` (a string, a list of strings, or text pairs if accepted).

        ``params`` (the request's validated parameters) lets a task expand its inputs,
        e.g. one premise/hypothesis pair per candidate label.

        Raises:
            InvalidInputError: naming the offending input.
        """
        items, single = cls._items(inputs, max_inputs)
        if cls.accepts_pairs and all(isinstance(item, dict) for item in items):
            return cls._parse_pairs(items, single)
        where = "inputs" if single else "inputs[{}]"
        texts = [check_text(item, where.format(i)) for i, item in enumerate(items)]
        return TaskInputs(texts, None, single)

    @staticmethod
    def _items(inputs: Any, max_inputs: int) -> tuple[list[Any], bool]:
        """``inputs`` as a non-empty list within the limit, and whether one item was sent."""
        single = not isinstance(inputs, list)
        items = [inputs] if single else inputs
        if not items:
            raise InvalidInputError("inputs is an empty list")
        if len(items) > max_inputs:
            raise InvalidInputError(
                f"inputs has {len(items)} items, more than the limit of {max_inputs} per request"
            )
        return items, single

    @classmethod
    def _parse_pairs(cls, items: list[dict], single: bool) -> TaskInputs:
        texts, pairs = [], []
        for i, item in enumerate(items):
            where = "inputs" if single else f"inputs[{i}]"
            unknown = set(item) - {"text", "text_pair"}
            if unknown or "text" not in item or "text_pair" not in item:
                raise InvalidInputError(f"{where} must be an object with 'text' and 'text_pair'")
            texts.append(check_text(item["text"], f"{where}.text"))
            pairs.append(check_text(item["text_pair"], f"{where}.text_pair"))
        return TaskInputs(texts, pairs, single)

    @classmethod
    def prompted(cls, inputs: TaskInputs, params: TaskParameters, prompts: Prompts
                 ) -> TaskInputs:
        """``inputs`` with the prompt the request names (or the model's default) before
        each text; only for :attr:`takes_prompts` tasks."""
        return inputs

    @classmethod
    def format(cls, results: list[Any], inputs: TaskInputs, params: Any = None) -> Any:
        """Shape per-input results as the Hugging Face Inference API answers."""
        return results[0] if inputs.single else results

    # --- hooks that need a loaded model -------------------------------------------

    def forward(self, engine: Engine, batch: dict[str, Any]) -> list[Any]:
        """Run ``engine`` on a padded batch of torch tensors; one output per row."""
        raise NotImplementedError

    def forward_mode(self, params: TaskParameters) -> str:
        """How the rows of a request with ``params`` run: ``""`` with :meth:`forward`, any
        other mode with :meth:`forward_in_mode`; rows of different modes never share a
        forward pass. Asked on the model replica before the rows join a batch, so it is
        also where a request this model cannot run is refused.

        Raises:
            InvalidInputError: ``params`` ask what this model cannot do.
        """
        return ""

    def forward_in_mode(self, engine: Engine, batch: dict[str, Any], mode: str) -> list[Any]:
        """:meth:`forward` for rows whose :meth:`forward_mode` is ``mode`` (not ``""``)."""
        raise NotImplementedError(f"{self.name} has no forward mode {mode!r}")

    def postprocess(self, output: np.ndarray, params: TaskParameters) -> Any:
        """Turn one row's raw output into its answer."""
        raise NotImplementedError

    def postprocess_request(
        self,
        outputs: list[np.ndarray],
        params: TaskParameters,
        layout: str,
        tokens: RowTokens | None = None,
        texts: Sequence[str] | None = None,
        text_pairs: Sequence[str] | None = None,
    ) -> list[Any]:
        """Answers of one request from its rows; by default one answer per row.

        Args:
            outputs: the request's rows as :meth:`forward` returned them.
            params: the request's parameters (of the task's :attr:`parameters` class).
            layout: how the rows become answers (:attr:`TaskInputs.layout`).
            tokens: only for :attr:`needs_offsets` tasks, per row its tokens: a
                :data:`TokenRow`, or for :attr:`windowed` tasks a
                :class:`serving.batching.WindowRow` (naming the input it belongs to).
            texts: only for :attr:`needs_offsets` tasks, the request's input texts.
            text_pairs: only for :attr:`windowed` tasks, the inputs' second segments.
        """
        return [self.postprocess(output, params) for output in outputs]
