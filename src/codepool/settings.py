"""Settings: one msgspec Struct, read from ``CODEPOOL_*`` environment variables once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import msgspec


class SettingsError(ValueError):
    """An environment variable holds a value codepool cannot use."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    # None: start an embedded redis-server under data_dir/redis (see embedded.py).
    redis_url: str | None = None
    root_key: str = ""
    data_dir: Path = Path("var")
    snapshot_interval: float = 60.0
    smtp_url: str | None = None
    # Upload bodies above this are refused with 413 (default 4 GiB: ~300M short codes).
    max_upload_bytes: int = 4 * 1024**3
    # How long an Idempotency-Key keeps its first answer.
    idempotency_ttl: int = 24 * 3600
    # Approximate cap of the per-project event stream (XADD MAXLEN ~).
    events_maxlen: int = 1_000_000
    # Most requests one coalesced issue script call serves.
    issue_batch_max: int = 256
    # Connections per worker process; the pool blocks instead of failing when all are busy.
    redis_max_connections: int = 64
    log_level: str = "INFO"


# env var suffix -> field name. Kept explicit so the README table and this stay in step.
_ENV: dict[str, str] = {
    "REDIS_URL": "redis_url",
    "ROOT_KEY": "root_key",
    "DATA_DIR": "data_dir",
    "SNAPSHOT_INTERVAL": "snapshot_interval",
    "SMTP_URL": "smtp_url",
    "MAX_UPLOAD_BYTES": "max_upload_bytes",
    "IDEMPOTENCY_TTL": "idempotency_ttl",
    "EVENTS_MAXLEN": "events_maxlen",
    "ISSUE_BATCH_MAX": "issue_batch_max",
    "REDIS_MAX_CONNECTIONS": "redis_max_connections",
    "LOG_LEVEL": "log_level",
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
    return settings
