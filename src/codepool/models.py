"""msgspec Structs: what the API takes and answers, and what is stored beside Redis hashes.

Inbound Structs forbid unknown fields, so a typo in a field name is a 400, not a
silently ignored setting.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

# Ids are short URL-safe strings; they also appear inside Redis key names, so no ':'
# (an id like "p1:avail" would name another key of another type). Path ids must match
# too (api/params.py): every id the API creates or accepts on creation does.
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
Id = Annotated[str, Meta(pattern=ID_PATTERN)]
# A user id is whatever the customer's system uses; no control characters, as it is
# stored inside \31/\30-separated records. It may hold ':': user keys end in a fixed
# suffix (keys.user_codes, keys.user_events), so no user id names another user's key.
USER_ID_PATTERN = r"^[^\x00-\x1f\x7f]{1,128}$"
UserId = Annotated[str, Meta(pattern=USER_ID_PATTERN)]
Name = Annotated[str, Meta(min_length=1, max_length=200)]
Email = Annotated[str, Meta(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320)]
Url = Annotated[str, Meta(pattern=r"^https?://[^\s]+$", max_length=2000)]
Threshold = Annotated[int, Meta(ge=0)]
# Empty-soon alert: seconds of stock left at the current rate (up to 31 days).
SoonSeconds = Annotated[int, Meta(ge=1, le=2_678_400)]
SoonAlerts = Annotated[list[SoonSeconds], Meta(max_length=10)]
Count = Annotated[int, Meta(ge=1, le=1000)]
# How long a hand-out stays a hold (issue, purchase) before it goes back by itself.
HoldSeconds = Annotated[int, Meta(ge=1, le=86400)]
Role = Literal["admin", "pos"]
Status = Literal["available", "assigned", "redeemed"]


class Inbound(Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of request bodies."""


# -- projects and keys ---------------------------------------------------------------


class ProjectIn(Inbound):
    name: Name
    id: Id | None = None


class Project(Struct, kw_only=True):
    id: str
    name: str
    created_at: float
    user_token_secret: str
    webhook_secret: str


class ProjectSummary(Struct, kw_only=True):
    id: str
    name: str
    created_at: float


class KeyIn(Inbound):
    role: Role
    name: Name


class KeyCreated(Struct, kw_only=True):
    id: str
    role: str
    name: str
    created_at: float
    key: str  # shown once; only its hash is stored


class KeyInfo(Struct, kw_only=True):
    id: str
    role: str
    name: str
    created_at: float


class StoredKey(Struct, kw_only=True):
    """An API key as stored: the secret only as a SHA-256 hex digest."""

    id: str
    role: str
    name: str
    created_at: float
    secret_sha256: str


# -- pools ---------------------------------------------------------------------------


class Notify(Struct, forbid_unknown_fields=True, kw_only=True):
    emails: list[Email] = []
    webhook_url: Url | None = None


class PoolIn(Inbound):
    name: Name
    low_stock_thresholds: Annotated[list[Threshold], Meta(max_length=20)] = []
    empty_soon_alerts: SoonAlerts = []
    notify: Notify = msgspec.field(default_factory=Notify)
    expires_at: float | None = None


class PoolPatch(Inbound):
    name: Name | UnsetType = UNSET
    low_stock_thresholds: Annotated[list[Threshold], Meta(max_length=20)] | UnsetType = UNSET
    empty_soon_alerts: SoonAlerts | UnsetType = UNSET
    notify: Notify | UnsetType = UNSET
    expires_at: float | UnsetType | None = UNSET


class Pool(Struct, kw_only=True):
    id: str
    name: str
    project_id: str
    total: int
    available: int
    assigned: int
    redeemed: int
    used_by: list[str]
    low_stock_thresholds: list[int]
    empty_soon_alerts: list[int]
    notify: Notify
    expires_at: float | None
    created_at: float


class PoolSummary(Struct, kw_only=True):
    id: str
    name: str
    total: int
    available: int


class StatsPoint(Struct, kw_only=True):
    """One minute of a pool's exact counters; ``t`` its start (Unix seconds)."""

    t: float
    issued: int
    redeemed: int
    released: int


class PoolStats(Struct, kw_only=True):
    pool_id: str
    available: int
    rate_per_minute: float  # codes handed out per minute, now (docs/stats.md)
    empty_at: float | None  # when the pool runs dry at that rate; None while it is 0
    series: list[StatsPoint]  # one per minute, oldest first, zeros included


# -- codes ---------------------------------------------------------------------------


class UploadResult(Struct, kw_only=True):
    added: int
    skipped: int
    total: int
    available: int


# codes/generate (codegen.py): at most 10M codes a call, patterns up to a code's length.
GenerateCount = Annotated[int, Meta(ge=1, le=10_000_000)]
CodePattern = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=128,
        description="Each # is one random character of the charset; the rest is literal.",
    ),
]
Charset = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=128,
        description="unambiguous, alphanumeric, digits, letters, or 2-93 distinct printable"
        " ASCII characters (no space, no comma).",
    ),
]
GuessProbability = Annotated[
    float,
    Meta(
        gt=0,
        le=1,
        description="422 pattern_too_small when the pool's live codes would pass this"
        " share of the pattern's space.",
    ),
]


class GenerateIn(Inbound):
    count: GenerateCount
    pattern: CodePattern
    # unambiguous, alphanumeric, digits, letters, or the characters themselves.
    charset: Charset = "unambiguous"
    check_character: bool = False
    max_guess_probability: GuessProbability = 0.001


class Generated(Struct, kw_only=True):
    added: int
    total: int
    available: int
    space: float  # charset length ** number of '#'
    guess_probability: float  # the pool's live codes / space, after this generation


class CodeEntry(Struct, kw_only=True):
    code: str
    status: Status
    assigned_time: float | None = None
    redeemed_time: float | None = None
    user_id: str | None = None
    reward_id: str | None = None
    hold_expires_at: float | None = None


class IssueIn(Inbound):
    count: Count = 1
    user_id: UserId | None = None
    hold_seconds: HoldSeconds | None = None


class IssuedCode(Struct, kw_only=True):
    code: str
    assigned_time: float
    hold_expires_at: float | None = None  # a hold: back to the pool then, unless confirmed


class IssueOut(Struct, kw_only=True):
    codes: list[IssuedCode]
    available: int


# -- rewards and purchases -------------------------------------------------------------

Metadata = Annotated[dict[str, Any], Meta(max_length=100)]
Limit = Annotated[int, Meta(ge=1)]


class RewardIn(Inbound):
    name: Name
    pool_id: Id
    hide_code: bool = False
    per_user_limit: Limit | None = None
    metadata: Metadata = {}
    id: Id | None = None


class RewardPatch(Inbound):
    name: Name | UnsetType = UNSET
    pool_id: Id | UnsetType = UNSET
    hide_code: bool | UnsetType = UNSET
    per_user_limit: Limit | UnsetType | None = UNSET
    metadata: Metadata | UnsetType = UNSET


class Reward(Struct, kw_only=True):
    id: str
    name: str
    pool_id: str
    hide_code: bool
    per_user_limit: int | None
    metadata: dict[str, Any]
    created_at: float
    available: int


class PurchaseIn(Inbound):
    user_id: UserId | None = None  # admins buy on behalf of a user; users buy for themselves
    hold_seconds: HoldSeconds | None = None


class Purchase(Struct, kw_only=True):
    purchase_id: str
    reward_id: str
    user_id: str
    code: str | None  # None for a hide_code reward
    assigned_time: float
    hold_expires_at: float | None = None


class Voucher(Struct, kw_only=True):
    code: str | None  # None for a user looking at a hide_code reward's voucher
    status: Status
    pool_id: str
    reward_id: str | None
    purchase_id: str | None
    assigned_time: float
    redeemed_time: float | None
    hold_expires_at: float | None = None


EventType = Literal[
    "REDEEMED_VOUCHER",
    "VOUCHER_USED",
    "VOUCHER_RELEASED",
    "POOL_LOW",
    "POOL_EXHAUSTED",
    "POOL_EMPTY_SOON",
]


class Event(Struct, kw_only=True, omit_defaults=True):
    id: str
    type: str
    time: float
    user_id: str | None = None
    reward_id: str | None = None
    pool_id: str | None = None
    code: str | None = None
    purchase_id: str | None = None
    threshold: int | None = None
    available: int | None = None
    hold_expires_at: float | None = None  # REDEEMED_VOUCHER of a hold
    reason: str | None = None  # VOUCHER_RELEASED: "hold_expired" when a hold ran out
    # POOL_EMPTY_SOON
    rate_per_minute: float | None = None
    empty_at: float | None = None
    threshold_seconds: int | None = None


# How an event's optional fields are stored in its stream entry (all text): these are
# numbers. Read the same way by the events listing and the webhook deliveries.
_EVENT_INTS = frozenset({"threshold", "available", "threshold_seconds"})
_EVENT_FLOATS = frozenset({"rate_per_minute", "empty_at", "hold_expires_at"})
_EVENT_TEXTS = ("user_id", "reward_id", "pool_id", "code", "purchase_id", "reason")


def event_optionals(fields: dict[str, str]) -> dict[str, Any]:
    """The optional fields of an event's stream entry (empty ones left out), typed."""
    out: dict[str, Any] = {k: fields[k] for k in _EVENT_TEXTS if fields.get(k)}
    out.update({k: int(fields[k]) for k in _EVENT_INTS if fields.get(k)})
    out.update({k: float(fields[k]) for k in _EVENT_FLOATS if fields.get(k)})
    return out


CodeText = Annotated[str, Meta(min_length=1, max_length=128)]


class CodeIn(Inbound):
    code: CodeText


class Validation(Struct, kw_only=True):
    valid: bool
    status: Status | None
    reason: Literal["unknown_code", "not_issued", "already_redeemed", "pool_expired"] | None = None
    pool_id: str | None = None
    reward_id: str | None = None
    user_id: str | None = None
    purchase_id: str | None = None
    assigned_time: float | None = None
    redeemed_time: float | None = None
    hold_expires_at: float | None = None


class CodeInstance(Struct, kw_only=True, omit_defaults=True):
    """One instance of a code as redeem/release answer it (`available` only after a release)."""

    code: str
    status: Status
    pool_id: str
    reward_id: str | None
    user_id: str | None
    purchase_id: str | None
    assigned_time: float | None
    redeemed_time: float | None
    available: int | None = None  # after a release: the pool's available count
    # After a confirm: null (the hand-out is final); left out elsewhere.
    hold_expires_at: float | UnsetType | None = UNSET


class SecretRotateIn(Inbound):
    secret: Literal["user_token_secret", "webhook_secret"]


# -- notifications -------------------------------------------------------------------


class WebhookIn(Inbound):
    url: Url
    events: Annotated[list[EventType], Meta(min_length=1, max_length=20)]


class WebhookConfig(Struct, kw_only=True):
    url: str
    events: list[str]


class WebhookEvent(Struct, kw_only=True, omit_defaults=True):
    """The body of every webhook POST: the event, with its project.

    ``id`` is the event id (as in GET /events): the same on every attempt, so a receiver
    de-duplicates by it.
    """

    id: str
    type: str
    time: float
    project_id: str
    user_id: str | None = None
    reward_id: str | None = None
    pool_id: str | None = None
    pool_name: str | None = None
    code: str | None = None
    purchase_id: str | None = None
    threshold: int | None = None
    available: int | None = None
    hold_expires_at: float | None = None
    reason: str | None = None
    # POOL_EMPTY_SOON
    rate_per_minute: float | None = None
    empty_at: float | None = None
    threshold_seconds: int | None = None


class DeadDelivery(Struct, kw_only=True):
    """A delivery that gave up, as admins see it in the dead letters."""

    id: str
    kind: Literal["webhook", "email"]
    url: str | None  # webhook
    to: list[str]  # email recipients
    event: WebhookEvent
    attempts: int
    error: str
    created_at: float
    died_at: float


# -- lists ---------------------------------------------------------------------------

T = TypeVar("T")


class Page(Struct, Generic[T], kw_only=True):
    data: list[T]
    matched: int
    matched_limited: bool
    skip: int
    limit: int


# -- errors --------------------------------------------------------------------------


class ErrorBody(Struct, kw_only=True):
    code: str
    message: str
    details: dict[str, Any] = {}


class ErrorOut(Struct, kw_only=True):
    error: ErrorBody


class Health(Struct, kw_only=True):
    status: str
