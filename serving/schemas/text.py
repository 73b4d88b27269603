"""Text that cannot be served (lone surrogates, NUL characters), found anywhere in a
request body before any dialect's schema reads it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


# Which end of a long input truncation cuts: "right" keeps its start, "left" its end. TEI's
# clients send its enum's spelling ("Left", "Right") as well as lower case.
TruncationDirection = Annotated[Literal["right", "left"], BeforeValidator(_lower)]


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be served, or None when it can.

    A lone surrogate (JSON's ``"\\ud800"``) is not Unicode: tokenizers and JSON encoders
    cannot encode it. A NUL character is never text, and truncates strings in C libraries.
    """
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            return (f"contains a lone surrogate (U+{ord(text[exc.start]):04X}) at index "
                    f"{exc.start}, which is not valid Unicode")
    index = text.find("\x00")
    if index >= 0:
        return f"contains a NUL character (U+0000) at index {index}"
    return None


def find_unreadable_text(value: Any, root: str = "") -> str | None:
    """``"<where>: <why>"`` for the first string of a JSON value (object keys included)
    that :func:`text_problem` refuses; None when there is none."""
    if not _has_unreadable_text(value):  # the common case, without building locations
        return None
    stack: list[tuple[Any, str]] = [(value, root)]
    while stack:  # depth-first in document order, without recursion (JSON may nest deeply)
        item, where = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem is not None:
                return f"{where or 'request body'}: {problem}"
        elif isinstance(item, dict):
            children = []
            for key, child in item.items():
                if isinstance(key, str) and (problem := text_problem(key)) is not None:
                    return f"{where or 'request body'}: a key {problem}"
                children.append((child, f"{where}.{key}" if where else str(key)))
            stack.extend(reversed(children))
        elif isinstance(item, list | tuple):
            stack.extend(reversed([(child, f"{where}[{i}]") for i, child in enumerate(item)]))
    return None


def _has_unreadable_text(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if text_problem(item) is not None:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def refuse_unreadable_text(data: Any, root: str = "") -> Any:
    problem = find_unreadable_text(data, root)
    if problem is not None:
        # The message goes in the context: a template would read braces in it as fields.
        raise PydanticCustomError("unreadable_text", "{problem}", {"problem": problem})
    return data
