"""The ingress's settings (``ingress:`` of the configuration): limits, admission,
timeouts, retries, the API key, CORS and what the API dialects accept.

Part of the configuration contract of ``serving/config.py`` (which re-exports it); every
field has a type, a default and a description.
"""

from __future__ import annotations

from pydantic import Field

from serving.load_settings import Strict


class IngressSettings(Strict):
    """The FastAPI ingress deployment."""

    num_replicas: int = Field(1, ge=1, description="Ingress replicas.")
    num_cpus: float = Field(0.25, ge=0, description="CPUs per ingress replica.")
    max_ongoing_requests: int = Field(1024, ge=1, description="Concurrent requests per replica.")
    max_queued_requests: int = Field(
        1024, ge=-1, description="Requests Ray queues for the ingress beyond "
        "max_ongoing_requests before refusing them (-1: unbounded).",
    )
    max_inflight_requests: int = Field(
        512, ge=1, description="Inference requests one ingress replica serves at once; "
        "beyond, new ones are refused at once with 429 and Retry-After.",
    )
    max_queue_wait_s: float | None = Field(
        None, gt=0, description="On each model route, admit no more requests than one "
        "ingress replica answers in this many seconds at its measured rate (429 beyond), so "
        "accepted requests do not queue longer; null (the default): only "
        "max_inflight_requests bounds them.",
    )
    request_timeout_s: float = Field(
        30, gt=0, description="An HTTP request not answered by then gets a 504 and its queued "
        "work is cancelled (a stream that has started is not cut).",
    )
    retries: int = Field(
        2, ge=0, le=10, description="Times a request whose replica died mid-call is retried "
        "on another replica (inference is idempotent).",
    )
    max_body_bytes: int = Field(
        2 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 above)."
    )
    health_timeout_s: float = Field(10, gt=0, description="Per-model probe timeout of /health.")
    coalesce_max_requests: int = Field(
        64, ge=1, le=4096,
        description="Most concurrent requests merged into one tokenizer + model call.",
    )
    coalesce_wait_s: float = Field(
        0.001, ge=0, le=1, description="How long the ingress waits to merge requests."
    )
    api_key_env: str = Field(
        "TRANSFORMERS_SERVE_API_KEY",
        description="Environment variable holding the API key (unset: no auth). The key "
        "itself never goes in the config.",
    )
    api_key_file_env: str = Field(
        "TRANSFORMERS_SERVE_API_KEY_FILE",
        description="Environment variable naming a file that holds the API key (a mounted "
        "secret); used when the key variable is unset.",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API (CORS); empty: none.",
    )
    openai_token_ids: bool = Field(
        False, description="Take token ids of the model's own tokenizer as /v1/embeddings "
        "input. Off: such requests are refused, because OpenAI's tooling sends ids of "
        "OpenAI's vocabulary (LangChain's OpenAIEmbeddings by default), which a model would "
        "read as its own and embed as other words, without an error.",
    )
