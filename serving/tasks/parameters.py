"""Task parameters: what every task accepts (``TaskParameters``), the parameters of the
tasks behind TEI's routes (``TruncatedEitherSide``), and the typed view a task takes of
them (``own_parameters``). Each task subclasses one of these with its own fields."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from serving.schemas.text import TruncationDirection


class TaskParameters(BaseModel):
    """Parameters every task accepts. Unknown parameters are rejected by name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    truncation: bool = Field(
        True,
        validation_alias=AliasChoices("truncation", "truncate"),
        description="Cut inputs longer than the model window; false rejects them with 422.",
    )

    @field_validator("truncation", mode="before", check_fields=False)
    @classmethod
    def _not_a_token_count(cls, value: Any) -> Any:
        # TGI's `truncate` is a number of tokens; read as a bool it would mean something else.
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError("must be true or false (a token count is not supported)")
        return value

    def batch_key(self) -> tuple:
        """What, besides ``truncation``, changes how this request's texts are encoded or
        run: requests whose keys differ never share a tokenizer or model call."""
        return ()

    def truncation_side(self) -> str:
        """Which end of a long input truncation cuts (``"right"``: its end)."""
        return "right"


class TruncatedEitherSide(TaskParameters):
    """Parameters of the tasks behind TEI's routes, which may cut long inputs at the start
    (TEI's ``truncation_direction``)."""

    truncation_direction: TruncationDirection = Field(
        "right", description="Which end of an input longer than the model window is cut: "
        "'right' keeps its start, 'left' its end (special tokens stay in place)."
    )

    def batch_key(self) -> tuple:
        return (*super().batch_key(), self.truncation_direction)

    def truncation_side(self) -> str:
        return self.truncation_direction


_Params = TypeVar("_Params", bound=TaskParameters)


def own_parameters(params: TaskParameters, kind: type[_Params]) -> _Params:
    """``params`` as the task's own parameter class ``kind``.

    A task receives the parameters its :attr:`Task.parameters` validated; the hooks take
    the base class so that every task honours the same contract.

    Raises:
        TypeError: ``params`` are of another class (a caller broke that contract).
    """
    if not isinstance(params, kind):
        raise TypeError(f"expected {kind.__name__}, got {type(params).__name__}")
    return params
