"""Every Redis key name codepool uses, in one place.

All keys of a project share the ``{project}`` hash tag, so every atomic step (one Lua
script) touches a single cluster slot and the same scripts run unchanged on Redis
Cluster. The only cross-project key is the project registry.
"""

from __future__ import annotations

PREFIX = "cp"

# Global: the set of project ids. Written after the project hash exists, read by
# listings and background jobs; never part of a multi-key atomic step.
PROJECTS = f"{PREFIX}:projects"

# Global (durability, see codepool.durability): EPOCH is written once Redis holds a whole
# codepool state (first start, or the end of a restore); Redis coming up without it while
# snapshots exist means it lost its data. RESTORING exists while a restore runs: /readyz
# answers 503, and a restore that finds it at start knows an earlier one did not finish.
EPOCH = f"{PREFIX}:epoch"
RESTORING = f"{PREFIX}:restoring"

# Global (many hosts, codepool.durability.loop): the snapshot lease (the token of the one
# process taking snapshots, lua/lease.lua), the hosts that journal (host id -> Redis
# time of its last heartbeat: a restore needs the journals of every one of them), and
# the Redis time from which the snapshot taker still keeps snapshots (older journal
# files are no restore's concern: every host prunes its own).
SNAPSHOT_TAKER = f"{PREFIX}:snapshots:taker"
HOSTS = f"{PREFIX}:hosts"
SNAPSHOTS_KEPT_FROM = f"{PREFIX}:snapshots:kept_from"
# Not state: a restore keeps them (RESTORING is its own marker; EPOCH it deletes first,
# so a restore that dies leaves no complete-looking state), a state check ignores them.
KEPT_BY_RESTORE = (RESTORING, SNAPSHOT_TAKER, HOSTS, SNAPSHOTS_KEPT_FROM)
NOT_STATE = (EPOCH, *KEPT_BY_RESTORE)

# Global: the hold reaper's lease (codepool.holds): the token of the one process that
# reaps expired holds, with a TTL it renews; every process is ready to take it over.
HOLD_REAPER = f"{PREFIX}:holds:reaper"


def _p(project: str) -> str:
    return f"{PREFIX}:{{{project}}}"


def project(project: str) -> str:
    """Hash: id, name, created_at, user_token_secret, webhook_secret."""
    return f"{_p(project)}:project"


def api_keys(project: str) -> str:
    """Hash: key id -> JSON record (id, role, name, sha256 of the secret, created_at)."""
    return f"{_p(project)}:apikeys"


def pools(project: str) -> str:
    """Set of pool ids."""
    return f"{_p(project)}:pools"


def project_stored(project: str) -> str:
    """String: code instances the project stores, every pool and status (the quota,
    settings.max_codes_per_project). commit_upload.lua adds a whole upload at its first
    step (so concurrent uploads cannot both slip under), gives back what a deleted pool
    left uncommitted; delete_pool.lua takes off the pool's total."""
    return f"{_p(project)}:stored"


def pool_names(project: str) -> str:
    """Hash: pool name -> pool id (keeps names unique within the project)."""
    return f"{_p(project)}:poolnames"


def pool(project: str, pool_id: str) -> str:
    """Hash: the pool's metadata and exact counters (total, assigned, redeemed)."""
    return f"{_p(project)}:pool:{pool_id}"


def pool_available(project: str, pool_id: str) -> str:
    """List of available code strings, popped from the left."""
    return f"{_p(project)}:pool:{pool_id}:avail"


def pool_log(project: str, pool_id: str) -> str:
    """List: one code string per instance that left `available`, in hand-out order."""
    return f"{_p(project)}:pool:{pool_id}:log"


def pool_stats(project: str, pool_id: str, day: int) -> str:
    """String: the pool's exact per-minute counters of one UTC day (``day`` = Unix minute
    // 1440, see codepool.store.stats): 1440 minutes x 3 u32 cells (BITFIELD), cell
    ``minute_of_day * 3 + kind`` (0 issued, 1 redeemed, 2 released), big-endian.
    Created full size (17,280 bytes) by the first count of the day; expires 8 days after
    the day ends (lua/includes/common.lua, count_stats)."""
    return f"{_p(project)}:pool:{pool_id}:stats:{day}"


def pool_purge(project: str, pool_id: str) -> str:
    """List: a deleted pool's hand-out log, waiting for its issued records to be dropped."""
    return f"{_p(project)}:pool:{pool_id}:purge"


def pool_staging(project: str, pool_id: str, upload_id: str) -> str:
    """List: codes of an upload that is validated but not yet committed."""
    return f"{_p(project)}:pool:{pool_id}:stage:{upload_id}"


def code_index(project: str, bucket: int | str) -> str:
    """String, one of the project's 2^15 code index buckets (codepool.store.codeindex,
    docs/index.md): fixed-width entries (fingerprint, upload number, offset) of the
    code instances whose CRC-32 ends in ``bucket`` (its low 15 bits)."""
    return f"{_p(project)}:cx:{bucket}"


def code_index_uploads(project: str) -> str:
    """Hash: upload number -> where that upload's offsets went (segments) and its pool
    (lua/includes/common.lua, cx_upload); ``seq``: the last number given."""
    return f"{_p(project)}:cxup"


def pool_upload_lock(project: str, pool_id: str) -> str:
    """String with TTL: held by the one ``duplicates=skip`` upload running on a pool."""
    return f"{_p(project)}:pool:{pool_id}:uploadlock"


def generate_lock(project: str) -> str:
    """String with TTL: held by the one code generation running in the project (its
    codes must be new to every pool, so two at once could draw the same code)."""
    return f"{_p(project)}:generatelock"


def issued(project: str) -> str:
    """Hash: code string -> records of its instances that were handed out.

    Only issued codes have an entry, so memory follows what was handed out, not what
    was uploaded. See lua/issue.lua for the record format.
    """
    return f"{_p(project)}:issued"


def holds(project: str) -> str:
    """Sorted set: code string -> when its earliest hold may end (Unix s), for the hold
    reaper (lua/reap_holds.lua). A hint: a confirmed, redeemed or released hold keeps its
    entry until it comes due and the reaper finds nothing to give back."""
    return f"{_p(project)}:holds"


def events(project: str) -> str:
    """Stream of the project's events (REDEEMED_VOUCHER, VOUCHER_USED, POOL_LOW, ...)."""
    return f"{_p(project)}:events"


def idempotency(project: str, digest: str) -> str:
    """String with TTL: the first answer to a request with a given Idempotency-Key."""
    return f"{_p(project)}:idem:{digest}"


def upload_idempotency(project: str, digest: str) -> str:
    """String with TTL (settings.idempotency_ttl): an upload's Idempotency-Key record,
    ``<body fingerprint>|pending`` from the commit's first step, then
    ``<fingerprint>|<added>|<skipped>|<total>|<available>`` (lua/commit_upload.lua).
    ``digest`` names caller, route and key as for hand-outs."""
    return f"{_p(project)}:uidem:{digest}"


def rewards(project: str) -> str:
    """Set of reward ids."""
    return f"{_p(project)}:rewards"


def reward(project: str, reward_id: str) -> str:
    """Hash: the reward's fields."""
    return f"{_p(project)}:reward:{reward_id}"


def reward_users(project: str, reward_id: str) -> str:
    """Hash: user id -> codes of this reward the user holds (per-user limit)."""
    return f"{_p(project)}:reward:{reward_id}:users"


def pool_rewards(project: str, pool_id: str) -> str:
    """Set: ids of the rewards that draw from the pool (the pool's ``used_by``)."""
    return f"{_p(project)}:pool:{pool_id}:rewards"


def user_codes(project: str, user_id: str) -> str:
    """List: code strings handed to a user, oldest first."""
    return f"{_p(project)}:user:{user_id}:codes"


def user_events(project: str, user_id: str) -> str:
    """List: the events about one user, oldest first, each item ``<event id>\\x1f<type>``
    (the id as in the project stream), written in the same script as the project event,
    so ``/events`` for a user reads only this and the page's events by id, never a scan
    of the project stream (lua/includes/common.lua add_user_event; capped by
    settings.user_events_maxlen). Not a stream: a one-entry stream takes ~4.7 KB on
    Redis 6.2; not whole copies: they cost ~2 us of Redis per purchase."""
    return f"{_p(project)}:user:{user_id}:events"


def rate_window(project: str, second: int | str = "") -> str:
    """Hash: the project's requests per credential in one second of Redis's clock.

    Field: the credential, ``key:<api key id>`` or ``user:<user id>``, or
    ``mcp:<api key id>`` for a key's agent tool calls (store.limits.check_tool); value:
    its requests in that second (lua/includes/common.lua's count_requests). Lives 2 s
    past its second's last request. A count above the role's limit is refused with 429
    and ``Retry-After`` = the rest of the second, rounded up (1). Without ``second``: the
    prefix the scripts get as a key (their clock picks the second); it carries the
    project's hash tag, so every window is in the project's slot.
    """
    return f"{_p(project)}:rl:{second}"


# -- notifications (see codepool.notify) ----------------------------------------------


def outbox(project: str) -> str:
    """Stream: events someone must be told about, written in the same script as the event.

    Read through the consumer group ``notify``; an entry leaves the stream once it has
    been turned into deliveries (lua/fan_out.lua). Never trimmed by length: that would
    lose alerts.
    """
    return f"{_p(project)}:outbox"


def webhook(project: str) -> str:
    """Hash: the project webhook: url, events (comma-separated event types)."""
    return f"{_p(project)}:webhook"


def deliveries(project: str) -> str:
    """Hash: delivery id -> JSON record (codepool.notify.records.Delivery), live or dead."""
    return f"{_p(project)}:deliveries"


def delivery_attempts(project: str) -> str:
    """Hash: delivery id -> attempts started so far."""
    return f"{_p(project)}:deliveries:attempts"


def delivery_queue(project: str) -> str:
    """Sorted set: live delivery id -> when it is due (Unix ms): its next attempt, or,
    while a worker sends it, the end of that worker's lease."""
    return f"{_p(project)}:deliveries:queue"


def dead_letters(project: str) -> str:
    """List: ids of deliveries that gave up, newest first (capped)."""
    return f"{_p(project)}:deliveries:dead"


def dead_info(project: str) -> str:
    """Hash: dead delivery id -> JSON (codepool.notify.records.DeadInfo)."""
    return f"{_p(project)}:deliveries:deadinfo"
