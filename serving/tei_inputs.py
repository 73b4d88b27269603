"""Text Embeddings Inference (TEI) inputs of token ids: ``/embed``'s batches mixing texts
and token ids, and ``/decode``'s ids. No Ray and no FastAPI here.

TEI embeds token ids as given (it decodes them and encodes the text back without special
tokens); with a prompt it decodes them without special tokens and embeds the prompted
text (core/src/tokenization.rs ``tokenize_input``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from serving.errors import InvalidInputError
from serving.schemas.tei import TeiDecodeRequest, TeiEmbedRequest
from serving.tasks.base import check_text


@dataclass(frozen=True)
class EmbedInputs:
    """An ``/embed`` request's inputs by kind, each with its place in the request: texts
    (tokenized as usual) and token-id inputs (embedded as given)."""

    texts: list[str]
    text_places: list[int]
    ids: list[list[int]]
    id_places: list[int]
    id_names: list[str]  # how errors name each token-id input (``inputs[3]``)

    def with_ids_as_texts(self, texts: list[str]) -> EmbedInputs:
        """These inputs with the token-id inputs replaced by ``texts`` (their decoding)."""
        by_place = dict(zip([*self.text_places, *self.id_places], [*self.texts, *texts],
                            strict=True))
        places = sorted(by_place)
        return EmbedInputs([by_place[p] for p in places], places, [], [], [])

    def merged(self, text_vectors: list[Any], id_vectors: list[Any]) -> list[Any]:
        """The vectors of both kinds in the request's order."""
        merged: list[Any] = [None] * (len(self.text_places) + len(self.id_places))
        for places, vectors in ((self.text_places, text_vectors), (self.id_places, id_vectors)):
            for place, vector in zip(places, vectors, strict=True):
                merged[place] = vector
        return merged


def embed_inputs(body: TeiEmbedRequest, max_inputs: int) -> EmbedInputs:
    """TEI's ``inputs`` by kind: a text, one list of token ids, or a batch of both.

    Raises:
        InvalidInputError: no input, more than ``max_inputs``, a blank text or an empty
            list of ids, naming the input.
    """
    data = body.inputs
    if isinstance(data, str):
        return EmbedInputs([check_text(data, "inputs")], [0], [], [], [])
    single = bool(data) and all(isinstance(item, int) for item in data)
    items: list[Any] = [data] if single else list(data)
    _check_count(len(items), max_inputs, "inputs", "items")
    texts, text_places, ids, id_places, id_names = [], [], [], [], []
    for place, item in enumerate(items):
        where = "inputs" if single else f"inputs[{place}]"
        if isinstance(item, str):
            texts.append(check_text(item, where))
            text_places.append(place)
        elif not item:
            raise InvalidInputError(f"{where} is an empty list of token ids")
        else:
            ids.append(item)
            id_places.append(place)
            id_names.append(where)
    return EmbedInputs(texts, text_places, ids, id_places, id_names)


def decode_inputs(body: TeiDecodeRequest, max_inputs: int) -> tuple[list[list[int]], list[str]]:
    """A ``/decode`` request's inputs (one list of ids, or a batch), and how errors name
    each.

    Raises:
        InvalidInputError: no input, more than ``max_inputs``, or an empty list of ids.
    """
    data = body.ids
    single = bool(data) and all(isinstance(item, int) for item in data)
    rows: list[Any] = [data] if single else list(data)
    _check_count(len(rows), max_inputs, "ids", "inputs")
    names = ["ids"] if single else [f"ids[{i}]" for i in range(len(rows))]
    empty = next((name for name, row in zip(names, rows, strict=True) if not row), None)
    if empty is not None:
        raise InvalidInputError(f"{empty} is an empty list of token ids")
    return rows, names


def _check_count(count: int, limit: int, field: str, kind: str) -> None:
    if not count:
        raise InvalidInputError(f"{field} is an empty list")
    if count > limit:
        raise InvalidInputError(
            f"{field} has {count} {kind}, more than the limit of {limit} per request")
