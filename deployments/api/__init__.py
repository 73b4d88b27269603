"""The HTTP API, one router per dialect; the ingress mounts them all.

- ``inference_api``: the Hugging Face Inference API (``POST /models/{name}``, streaming);
- ``openai_api``: OpenAI's ``/v1/embeddings`` and ``/v1/models``;
- ``tei_api``: Text Embeddings Inference (``/embed``, ``/rerank``, ``/info``...);
- ``operations``: ``/health``;
- ``playground``: the browser playground.

Every router uses :class:`deployments.http.ServingRoute`, the one place where errors
become answers.
"""

from deployments.api import inference_api, openai_api, operations, playground, tei_api

ROUTERS = [inference_api.router, openai_api.router, tei_api.router, operations.router,
           playground.router]
PLAYGROUND = playground.STATIC_FILES

__all__ = ["PLAYGROUND", "ROUTERS"]
