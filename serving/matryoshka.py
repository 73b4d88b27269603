"""``dimensions`` (keep the first n of each embedding) only for models trained for it.

Cutting an embedding keeps its meaning only if the model was trained with a Matryoshka
loss, which packs the information into the leading dimensions; any other model's cut
vectors rank worse, silently. So a request's ``dimensions`` is refused unless the model's
config names the sizes it was trained for (``ModelSpec.matryoshka_dimensions``). Nothing
is detected from the model's files: sentence-transformers records no Matryoshka training
in a saved model (``truncate_dim`` in ``config_sentence_transformers.json`` is a default
output size, not a training fact), and a model card's text is not a contract.

One check, :func:`check_dimensions`, answers for every route that takes ``dimensions``
(``/v1/embeddings``, TEI's ``/embed``, the Inference API's ``parameters.dimensions``),
in the ingress, before the request joins a batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from serving.errors import InvalidInputError

if TYPE_CHECKING:
    from serving.config import ModelSpec


def check_dimensions(dimensions: int | None, spec: ModelSpec, where: str) -> None:
    """Refuse ``dimensions`` for a model not configured as Matryoshka-trained, or below the
    smallest size it was trained for.

    Any size from the smallest trained one up is accepted: Matryoshka training makes the
    sizes between the trained ones usable too (as ``SentenceTransformer(truncate_dim=...)``
    takes any). More dimensions than the model has is refused once its vectors are known.

    Args:
        dimensions: the requested size, or ``None`` (nothing to check).
        spec: the served model's config entry.
        where: the request field, named in the message (``dimensions``,
            ``parameters.dimensions``).

    Raises:
        InvalidInputError: naming ``where`` and the config setting.
    """
    if dimensions is None:
        return
    trained = spec.matryoshka_dimensions
    if not trained:
        raise InvalidInputError(
            f"{where}: model {spec.name!r} is not configured as trained for Matryoshka "
            "embeddings, and cutting another model's vectors loses what the cut dimensions "
            "held; if it was trained so (e.g. with MatryoshkaLoss), list the sizes in its "
            "config's `matryoshka_dimensions`"
        )
    if dimensions < min(trained):
        raise InvalidInputError(
            f"{where}: {dimensions} is below the smallest size model {spec.name!r} was "
            f"trained for ({min(trained)}, its config's `matryoshka_dimensions`)"
        )


def check_request_dimensions(params: Any, spec: ModelSpec) -> None:
    """:func:`check_dimensions` for validated Inference API parameters (``params``), which
    may be of a task or view without ``dimensions``."""
    check_dimensions(getattr(params, "dimensions", None), spec, "parameters.dimensions")
