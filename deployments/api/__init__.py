"""The HTTP API, one router per dialect; the ingress mounts them all.

- ``inference_api``: the Hugging Face Inference API (``POST /models/{name}``, streaming);
- ``openai_api``: OpenAI's ``/v1/embeddings`` and ``/v1/models``;
- ``openai_generation_api``: OpenAI's ``/v1/completions`` and ``/v1/chat/completions``;
- ``tei_api``: Text Embeddings Inference (``/embed``, ``/rerank``, ``/info``...);
- ``rerank_api``: Cohere's and Jina's ``/v1/rerank``, ``/v2/rerank``; vLLM's ``/score``;
- ``operations``: ``/health``;
- ``playground``: the browser playground.

Every router uses :class:`deployments.http.ServingRoute`, the one place where errors
become answers (OpenAI's error shape on ``/v1/...``, ours elsewhere).
"""

import os
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from deployments.api import (
    inference_api,
    openai_api,
    openai_generation_api,
    operations,
    playground,
    rerank_api,
    tei_api,
)
from deployments.http import install_error_handlers
from deployments.middleware import Admission, ApiKeyAuth, BodySizeLimit, read_api_key
from serving.config import IngressSettings

# TEI's `/models/{name}/embed`... before the Inference API's `/models/{name}`: names may
# hold a slash (a pool's members, `pool/member`), so the latter matches those paths too.
ROUTERS = [tei_api.router, inference_api.router, openai_api.router, rerank_api.router,
           openai_generation_api.router, operations.router, playground.router]


def make_app(ingress: Any, settings: IngressSettings, on_refused: Any) -> FastAPI:
    """The ingress replica's FastAPI app: every dialect's routes calling ``ingress``, the
    one set of error handlers, and the middleware ``settings`` ask for (outermost last)."""
    app = FastAPI(
        title="transformers-serve",
        summary="Hugging Face Transformers on Ray Serve: a tokenizer → batched model graph.",
        version=tei_api.VERSION,
    )
    app.state.ingress = ingress  # what the routes call (deployments.api.common.IngressDep)
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/playground", playground.STATIC_FILES, name="playground")
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    api_key = read_api_key(settings.api_key_env, settings.api_key_file_env, os.environ)
    if api_key is not None:
        app.add_middleware(ApiKeyAuth, api_key=api_key)
    app.add_middleware(Admission, max_inflight=settings.max_inflight_requests,
                       max_wait_s=settings.max_queue_wait_s,
                       timeout_s=settings.request_timeout_s, on_refused=on_refused)
    if settings.cors_origins:  # outermost: preflight requests carry no API key
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID"],
        )
    return app


__all__ = ["ROUTERS", "make_app"]
