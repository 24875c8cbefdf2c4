"""Path and query parameters shared by the controllers.

Every path id has a pattern (validated, and stated in the OpenAPI document): an id that
does not match is a 400 before it gets near a Redis key, so ``POOL:avail`` can never
name a key of another type.
"""

from __future__ import annotations

from typing import Annotated

from litestar.params import FromPath, PathParameter, QueryParameter

from codepool.models import ID_PATTERN, USER_ID_PATTERN, Status

PathStr = FromPath[str]
# Projects, pools, rewards, API keys: what models.Id admits (every id one can create).
IdPath = Annotated[
    str,
    PathParameter(
        pattern=ID_PATTERN,
        min_length=1,
        max_length=64,
        description="An id: 1-64 of A-Z a-z 0-9 _ -.",
    ),
]
# A user id (the JWT `sub`): 1-128 characters, no control characters.
UserPath = Annotated[
    str,
    PathParameter(
        pattern=USER_ID_PATTERN,
        min_length=1,
        max_length=128,
        description="A user id: 1-128 characters, no control characters.",
    ),
]
# A dead-letter delivery: "<event id>.<n>" (notify/records.py).
DELIVERY_ID_PATTERN = r"^[0-9]{1,20}-[0-9]{1,20}\.[0-9]{1,6}$"
DeliveryPath = Annotated[
    str,
    PathParameter(
        pattern=DELIVERY_ID_PATTERN,
        max_length=48,
        description="A delivery id, as the dead letters list it: <event id>.<n>.",
    ),
]
UserQuery = Annotated[
    str | None,
    QueryParameter(pattern=USER_ID_PATTERN, max_length=128, description="Only this user's."),
]
# Bounded: Redis takes range indexes as 64-bit integers (a larger skip was a 500).
Skip = Annotated[int, QueryParameter(ge=0, le=2**53, description="Entries to skip.")]
Count = Annotated[int, QueryParameter(ge=1, le=1000, description="Entries to return (max 1000).")]
StatusFilter = Annotated[Status | None, QueryParameter(description="Only codes with this status.")]
