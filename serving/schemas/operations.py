"""Bodies every route shares (errors) and the operations routes' (``/health``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    error: str
    error_type: str


class HealthReport(BaseModel):
    status: Literal["ok", "unhealthy"]
    models: dict[str, str] = Field(description="'ok' or the reason a model is unhealthy.")
