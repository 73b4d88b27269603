"""The engine contract: load a model, run forward passes on padded batches, check health.

An engine owns the loaded Hugging Face model (its config, its weights, ``generate()``) and
how a padded batch of token ids becomes the model's outputs. Tasks call
:meth:`Engine.forward` and read the outputs by name (``.logits``, ``.last_hidden_state``);
they never call the model themselves, so any engine that returns the same outputs serves
every task it supports.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from serving.load_settings import LoadSettings
    from serving.tasks import Task


class Engine(ABC):
    """Runs one loaded model's forward passes on one device."""

    name: ClassVar[str]
    # Whether ``quantize: int8`` applies to this engine's models.
    quantizes: ClassVar[bool] = True

    def __init__(self, model: Any, device: str, dtype: str) -> None:
        self.model = model  # the Hugging Face (PyTorch) model
        self.device = device
        self.dtype = dtype

    @classmethod
    def refusal(cls, task: type[Task], device: str) -> str | None:
        """Why this engine cannot serve ``task`` on ``device`` (a configured device, so
        possibly ``"auto"``), or None when it can."""
        return None

    @classmethod
    def supports(cls, task: type[Task], device: str) -> bool:
        """Whether this engine can serve ``task`` on ``device``."""
        return cls.refusal(task, device) is None

    @classmethod
    @abstractmethod
    def load(cls, settings: LoadSettings) -> Engine:
        """Load the model ``settings`` describe (an engine that cannot run it as asked may
        return another engine, with a warning, rather than fail)."""

    @abstractmethod
    def forward(self, batch: dict[str, Any]) -> Any:
        """The model's outputs (attributes named as the Hugging Face model's) for a padded
        batch of torch tensors."""

    @abstractmethod
    def health(self) -> None:
        """Raise if the loaded model can no longer compute (e.g. non-finite weights)."""
