"""Path and query parameters shared by the controllers."""

from __future__ import annotations

from typing import Annotated

from litestar.params import FromPath, QueryParameter

from codepool.models import Status

PathStr = FromPath[str]
# Bounded: Redis takes range indexes as 64-bit integers (a larger skip was a 500).
Skip = Annotated[int, QueryParameter(ge=0, le=2**53, description="Entries to skip.")]
Count = Annotated[int, QueryParameter(ge=1, le=1000, description="Entries to return (max 1000).")]
StatusFilter = Annotated[Status | None, QueryParameter(description="Only codes with this status.")]
