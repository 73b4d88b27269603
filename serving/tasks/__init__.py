"""Registry of the served tasks, keyed by their ``transformers`` pipeline ids."""

from __future__ import annotations

from serving.tasks.base import Slice, Task, TaskInputs, TaskParameters
from serving.tasks.feature_extraction import FeatureExtraction
from serving.tasks.fill_mask import FillMask
from serving.tasks.question_answering import QuestionAnswering
from serving.tasks.seq2seq import Summarization, Text2TextGeneration, Translation
from serving.tasks.text_classification import TextClassification
from serving.tasks.text_generation import TextGeneration
from serving.tasks.token_classification import TokenClassification
from serving.tasks.zero_shot import ZeroShotClassification

TASKS: dict[str, type[Task]] = {
    task.name: task
    for task in (
        FeatureExtraction, FillMask, TextClassification, TextGeneration, TokenClassification,
        ZeroShotClassification, QuestionAnswering, Summarization, Translation,
        Text2TextGeneration,
    )
}

# Other names users know for the same tasks (the pipeline's own aliases among them).
ALIASES: dict[str, str] = {
    "sentiment-analysis": "text-classification",
    "embeddings": "feature-extraction",
    "ner": "token-classification",
}


def canonical_task(task: str) -> str:
    """The registered id of ``task`` (aliases resolved).

    Raises:
        ValueError: naming the supported tasks when ``task`` is unknown.
    """
    task = ALIASES.get(task, task)
    if task not in TASKS:
        known = ", ".join(sorted(TASKS) + sorted(ALIASES))
        raise ValueError(f"unknown task {task!r}; supported: {known}")
    return task


def task_class(task: str) -> type[Task]:
    """The :class:`Task` subclass serving ``task``."""
    return TASKS[canonical_task(task)]


__all__ = ["TASKS", "Slice", "Task", "TaskInputs", "TaskParameters", "canonical_task", "task_class"]
