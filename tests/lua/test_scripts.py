"""Every script in lua/, run on fakeredis and on a real redis-server."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from redis.asyncio import Redis

from codepool import keys
from codepool.auth import Credential
from codepool.scripts import Arg, Scripts, Status, script_sources
from codepool.settings import load_settings
from codepool.store import codeindex
from codepool.store.base import Backend, text
from codepool.store.codeindex import UploadIndex
from codepool.store.codes import CodeStore
from codepool.store.issuing import IssueRequest, issue_batch
from codepool.store.pools import PoolStore
from codepool.store.pos import PosStore
from codepool.store.records import parse_record
from codepool.store.stats import stats_keys
from codepool.store.trace import StreamEntries
from tests.scripthelpers import POOL, P, create_pool, fill

LUA = Path(__file__).resolve().parents[2] / "lua"


def test_every_lua_file_is_registered() -> None:
    on_disk = {p.stem for p in LUA.glob("*.lua")}
    assert on_disk == set(script_sources())
    for name, source in script_sources().items():
        assert "--[[" in source.split("\n", 1)[0], f"{name}.lua must open with its header"
        assert "KEYS[1]" in source and "Returns:" in source, f"{name}.lua header incomplete"
        assert '\n--@include "' not in source, f"{name}.lua include not resolved"


async def test_every_script_loads(redis: Redis) -> None:
    scripts = Scripts(redis)
    for name, source in script_sources().items():
        sha = await redis.script_load(source)
        assert sha, name
    assert scripts.names == sorted(script_sources())


async def _counters(b: Backend) -> tuple[int, int, int]:
    raw = await b.client.hmget(keys.pool(P, POOL), "total", "assigned", "redeemed")
    total, assigned, redeemed = (int(text(v)) for v in raw)
    avail = await b.client.llen(keys.pool_available(P, POOL))
    assert total == avail + assigned + redeemed
    return total, avail, assigned


async def _record(b: Backend, code: str) -> bytes:
    record = await b.client.hget(keys.issued(P), code)
    assert isinstance(record, bytes)
    return record


@pytest.fixture
def backend(redis: Redis) -> Backend:
    return Backend(redis, load_settings({}))


async def test_issued_records_of_repeated_strings_in_one_large_hand_out(
    backend: Backend,
) -> None:
    # A string repeated far apart in one hand-out of 2500 codes (over the API's limit of
    # 1000 per request, as one coalesced call of several requests can be), one of them
    # already issued from another pool: every instance keeps an entry of its own.
    codes = [f"U{i:05d}" for i in range(2500)]
    for at in (0, 999, 1000, 2400):
        codes[at] = "DUP"
    await create_pool(backend)
    await backend.client.hset(keys.issued(P), "U00005", "earlier")  # issued by another pool
    await fill(backend, codes)
    (result,) = await issue_batch(backend, P, POOL, [IssueRequest(count=2500, user_id="u")])
    assert result.status == Status.OK and result.codes == codes
    dup = text(await _record(backend, "DUP")).split("\x1e")
    assert len(dup) == 4 and len(set(dup)) == 1 and dup[0].split("\x1f")[4] == "u"
    assert text(await _record(backend, "U00005")).split("\x1e")[0] == "earlier"
    assert len(text(await _record(backend, "U00005")).split("\x1e")) == 2
    assert await backend.client.hlen(keys.issued(P)) == 2497
    assert await _counters(backend) == (2500, 0, 2500)


async def test_create_pool_rejects_taken_name_and_id(backend: Backend) -> None:
    await create_pool(backend)
    again = await backend.scripts.run(
        "create_pool",
        [keys.pool_names(P), keys.pools(P), keys.pool(P, "other")],
        ["other", "Pool", 1, "", "", "{}"],
    )
    assert again == -1
    same_id = await backend.scripts.run(
        "create_pool",
        [keys.pool_names(P), keys.pools(P), keys.pool(P, POOL)],
        [POOL, "New", 1, "", "", "{}"],
    )
    assert same_id == -2


async def test_commit_renames_into_empty_pool_and_appends_in_slices(backend: Backend) -> None:
    await create_pool(backend)
    assert await fill(backend, ["A", "B"], "u1") == [0, 2, 2]
    # Not empty now: the second upload is moved 3 at a time, order kept.
    assert await fill(backend, ["C", "D", "E", "F", "G"], "u2") == [0, 7, 7]
    assert await backend.client.lrange(keys.pool_available(P, POOL), 0, -1) == [
        b"A",
        b"B",
        b"C",
        b"D",
        b"E",
        b"F",
        b"G",
    ]
    fields = map(text, await backend.client.hkeys(keys.pool(P, POOL)))
    assert not [f for f in fields if f.startswith("committing:")]


async def test_commit_into_deleted_pool_drops_staging(backend: Backend) -> None:
    staging = keys.pool_staging(P, POOL, "u")
    await backend.client.rpush(staging, "A")
    await backend.client.expire(staging, 60)  # as the store stages
    result = await backend.scripts.run(
        "commit_upload",
        [keys.pool(P, POOL), keys.pool_available(P, POOL), staging, keys.project_stored(P)],
        [10, "u", 0],
    )
    assert result == [-5]
    assert not await backend.client.exists(staging)


async def test_issue_is_all_or_nothing_and_counts_exact(backend: Backend) -> None:
    await create_pool(backend)
    await fill(backend, [f"C{i}" for i in range(5)])
    results = await issue_batch(
        backend,
        P,
        POOL,
        [IssueRequest(count=3, user_id="u1"), IssueRequest(count=3), IssueRequest(count=2)],
    )
    assert [r.status for r in results] == [Status.OK, Status.EXHAUSTED, Status.OK]
    assert results[0].codes == ["C0", "C1", "C2"] and results[2].codes == ["C3", "C4"]
    assert results[1].codes == []
    assert await _counters(backend) == (5, 0, 5)
    inst = parse_record(await _record(backend, "C0"))
    assert [(i.pool_id, i.status, i.user_id) for i in inst] == [(POOL, "assigned", "u1")]
    assert await backend.client.lrange(keys.user_codes(P, "u1"), 0, -1) == [b"C0", b"C1", b"C2"]
    assert await backend.client.lrange(keys.pool_log(P, POOL), 0, -1) == [
        b"C0",
        b"C1",
        b"C2",
        b"C3",
        b"C4",
    ]


async def test_codes_a_call_does_not_hand_out_go_back_in_order(backend: Backend) -> None:
    # issue.lua pops for the whole call at once; what failed requests leave goes back
    # to the head in its order (over 1000 codes: more than one LPUSH), and hand-out
    # positions stay those of the hand-out order.
    codes = [f"C{i:04d}" for i in range(2500)]
    await create_pool(backend)
    await fill(backend, codes)
    revoked = Credential("key", "revoked")
    results = await issue_batch(
        backend,
        P,
        POOL,
        [
            IssueRequest(count=1),
            IssueRequest(count=1000, credential=revoked),
            IssueRequest(count=1000, credential=revoked),
            IssueRequest(count=2500),
            IssueRequest(count=2),
        ],
    )
    assert [r.status for r in results] == [
        Status.OK,
        Status.STALE_CREDENTIAL,
        Status.STALE_CREDENTIAL,
        Status.EXHAUSTED,
        Status.OK,
    ]
    assert results[0].codes == ["C0000"] and results[4].codes == ["C0001", "C0002"]
    assert (results[0].position, results[4].position) == (0, 1)
    assert results[4].available == 2497
    avail = keys.pool_available(P, POOL)
    assert [text(c) for c in await backend.client.lrange(avail, 0, -1)] == codes[3:]
    assert [text(c) for c in await backend.client.lrange(keys.pool_log(P, POOL), 0, -1)] == [
        "C0000",
        "C0001",
        "C0002",
    ]
    assert await _counters(backend) == (2500, 2497, 3)
    (rest,) = await issue_batch(backend, P, POOL, [IssueRequest(count=1000)])
    assert rest.codes == codes[3:1003] and rest.position == 3


async def test_issue_duplicate_strings_are_separate_instances(backend: Backend) -> None:
    await create_pool(backend)
    await fill(backend, ["SAVE10", "SAVE10", "SAVE10"])
    results = await issue_batch(
        backend, P, POOL, [IssueRequest(count=1, user_id=f"u{i}") for i in range(3)]
    )
    assert [r.codes for r in results] == [["SAVE10"]] * 3
    inst = parse_record(await _record(backend, "SAVE10"))
    assert [i.user_id for i in inst] == ["u0", "u1", "u2"]


async def test_issue_idempotency_replay_and_mismatch(backend: Backend) -> None:
    await create_pool(backend)
    await fill(backend, ["A", "B", "C"])
    first = IssueRequest(count=1, idempotency_digest="d1", fingerprint="f1")
    r1 = await issue_batch(backend, P, POOL, [first])
    r2 = await issue_batch(
        backend, P, POOL, [first, IssueRequest(count=1, idempotency_digest="d1", fingerprint="zz")]
    )
    assert r1[0].status == Status.OK
    assert r2[0].status == Status.REPLAYED and r2[0].codes == r1[0].codes
    assert r2[0].available == r1[0].available == 2
    assert r2[1].status == Status.IDEMPOTENCY_MISMATCH
    assert await _counters(backend) == (3, 2, 1)
    ttl = await backend.client.ttl(keys.idempotency(P, "d1"))
    assert 0 < ttl <= 24 * 3600


async def test_a_replay_never_tells_a_released_code(backend: Backend) -> None:
    await create_pool(backend)
    await fill(backend, ["A", "B", "C", "D"])
    buy = IssueRequest(count=2, idempotency_digest="d1", fingerprint="f1", purchase_id="p1")
    # The same key twice in one call: the second is a replay of the first (whose issued
    # records this call writes only at its end).
    first, same_call = await issue_batch(backend, P, POOL, [buy, buy])
    assert first.codes == ["A", "B"] and same_call.status == Status.REPLAYED
    redeemed = await PosStore(backend).redeem(P, "A")
    assert redeemed.status == "redeemed"
    (again,) = await issue_batch(backend, P, POOL, [buy])
    assert again.status == Status.REPLAYED and again.codes == ["A", "B"]  # A is still theirs
    await PosStore(backend).release(P, "B")
    (after_release,) = await issue_batch(backend, P, POOL, [buy])
    assert after_release.status == Status.GIVEN_BACK and after_release.codes == []
    assert await _counters(backend) == (4, 3, 0)  # total, available, assigned: as released


async def test_issue_expired_and_missing_pool(backend: Backend) -> None:
    await create_pool(backend, expires_at="1000")
    await fill(backend, ["A"])
    assert (await issue_batch(backend, P, POOL, [IssueRequest(count=1)]))[
        0
    ].status == Status.EXPIRED
    missing = await issue_batch(backend, P, "nope", [IssueRequest(count=1)])
    assert missing[0].status == Status.NO_POOL
    assert await _counters(backend) == (1, 1, 0)


async def test_thresholds_fire_once_per_crossing_and_rearm_on_refill(backend: Backend) -> None:
    await create_pool(backend, thresholds="3,1")
    await fill(backend, [f"C{i}" for i in range(5)], "u1")

    async def types() -> list[tuple[bytes, bytes]]:
        entries = cast(StreamEntries, await backend.client.xrange(keys.events(P)))
        return [(f[b"type"], f.get(b"threshold", b"")) for _, f in entries]

    await issue_batch(backend, P, POOL, [IssueRequest(count=1)])  # 4 left
    assert await types() == []
    await issue_batch(backend, P, POOL, [IssueRequest(count=1)])  # 3 left: crosses 3
    await issue_batch(backend, P, POOL, [IssueRequest(count=1)])  # 2 left: nothing new
    assert await types() == [(b"POOL_LOW", b"3")]
    await issue_batch(backend, P, POOL, [IssueRequest(count=2)])  # 0 left: crosses 1, exhausted
    assert await types() == [(b"POOL_LOW", b"3"), (b"POOL_LOW", b"1"), (b"POOL_EXHAUSTED", b"")]
    await fill(backend, [f"D{i}" for i in range(2)], "u2")  # 2 left: re-arms 1 only
    await issue_batch(backend, P, POOL, [IssueRequest(count=1)])  # 1 left: crosses 1 again
    assert (await types())[-1] == (b"POOL_LOW", b"1")
    assert len(await types()) == 4


async def test_update_pool_renames_and_rearms(backend: Backend) -> None:
    await create_pool(backend)
    await fill(backend, ["A", "B", "C"])
    args = [
        keys.pool_names(P),
        keys.pool(P, POOL),
        keys.pool_available(P, POOL),
        *stats_keys(P, POOL, 1.0),
    ]
    changes: list[Arg] = [POOL, "Renamed", "5,2", "", "-", "", 1.0]
    assert await backend.scripts.run("update_pool", args, changes) == 1
    assert await backend.client.hget(keys.pool_names(P), "Renamed") == POOL.encode()
    assert not await backend.client.hexists(keys.pool_names(P), "Pool")
    # Stock is 3: threshold 2 is armed, 5 is already passed (no crossing, no alert).
    assert await backend.client.hget(keys.pool(P, POOL), "armed") == b"2"
    keep: list[Arg] = ["missing", "", "", "", "", "", 1.0]
    assert await backend.scripts.run("update_pool", args, keep) in (1, -5)


async def test_delete_pool_refuses_in_use_and_purges_issued(backend: Backend) -> None:
    await create_pool(backend)
    await fill(backend, ["A", "B", "C"])
    await issue_batch(backend, P, POOL, [IssueRequest(count=2)])
    delete_keys = [
        keys.pool_names(P),
        keys.pools(P),
        keys.pool(P, POOL),
        keys.pool_available(P, POOL),
        keys.pool_log(P, POOL),
        keys.pool_rewards(P, POOL),
        keys.pool_purge(P, POOL),
        keys.project_stored(P),
    ]
    await backend.client.sadd(keys.pool_rewards(P, POOL), "r1")
    assert await backend.scripts.run("delete_pool", delete_keys, [POOL]) == -1
    await backend.client.srem(keys.pool_rewards(P, POOL), "r1")
    assert await backend.scripts.run("delete_pool", delete_keys, [POOL]) == 1
    left = await backend.scripts.run(
        "purge_issued", [keys.pool_purge(P, POOL), keys.issued(P)], [POOL, 1]
    )
    assert left == 1
    assert (
        await backend.scripts.run(
            "purge_issued", [keys.pool_purge(P, POOL), keys.issued(P)], [POOL, 1]
        )
        == 0
    )
    assert not await backend.client.exists(
        keys.issued(P), keys.pool(P, POOL), keys.pool_available(P, POOL)
    )
    assert await backend.scripts.run("delete_pool", delete_keys, [POOL]) == -5


async def test_skip_mode_staging_skips_pool_and_upload_duplicates(backend: Backend) -> None:
    """A duplicates=skip chunk (index_lookup.lua, then staged): a code in the pool
    (available: the index; handed out: the issued hash) or earlier in the upload (its
    own entries, pointing into its staging list, across calls) is skipped; a staged
    code's entries are written before the next chunk is looked up."""
    await create_pool(backend)
    await fill(backend, ["A", "B", "C"])
    await issue_batch(backend, P, POOL, [IssueRequest(count=1)])  # A handed out
    index = await UploadIndex.new(backend.scripts, P, POOL)
    staging = keys.pool_staging(P, POOL, "s")
    store = CodeStore(backend)
    chunk = [b"A", b"B", b"D", b"D", b"E"]
    assert await store.stage(P, POOL, staging, index, chunk, "skip", 0) == (2, 3)
    assert await store.stage(P, POOL, staging, index, [b"E", b"F", b"C"], "skip", 2) == (1, 2)
    assert await backend.client.lrange(staging, 0, -1) == [b"D", b"E", b"F"]
    # Another pool's skip upload takes B: it is not in that pool.
    await backend.scripts.run(
        "create_pool",
        [keys.pool_names(P), keys.pools(P), keys.pool(P, "pool2")],
        ["pool2", "Two", 1.0, "", "", "{}", ""],
    )
    other = await UploadIndex.new(backend.scripts, P, "pool2")
    staging2 = keys.pool_staging(P, "pool2", "s2")
    assert await store.stage(P, "pool2", staging2, other, [b"B"], "skip", 0) == (1, 0)


async def _lookup(backend: Backend, code: str) -> list[Any]:
    """validate.lua's answer for ``code`` at time 1.0."""
    bucket, uploads, crc = codeindex.lookup_args(P, code)
    result: list[Any] = await backend.scripts.run(
        "validate",
        [keys.issued(P), bucket, uploads],
        [code, 1.0, keys.pool(P, "\0"), keys.pool_available(P, "\0"), crc],
    )
    return result


async def test_lookups_answer_from_the_index_in_one_call(backend: Backend) -> None:
    """A code with no issued record is answered by its index bucket in the one script
    call, however long the pool (the old scan left pools past 50,000 codes undecided,
    -13); positions stay right as codes are popped from the head."""
    await create_pool(backend)
    codes = [f"L{i:06d}" for i in range(60_000)]
    await fill(backend, codes)
    assert await _lookup(backend, "L059999") == [-11, POOL.encode()]
    assert await _lookup(backend, "NOPE") == [-10]
    await issue_batch(backend, P, POOL, [IssueRequest(count=100)])
    assert await _lookup(backend, "L000100") == [-11, POOL.encode()]
    assert await _lookup(backend, "L030000") == [-11, POOL.encode()]
    assert (await _lookup(backend, "L000099"))[0] == 1  # handed out: its record answers
    # One entry per code, in the code's bucket.
    bucket, _, crc = codeindex.lookup_args(P, "L000007")
    found = [e for e in codeindex.entries(await backend.client.get(bucket)) if e[0] == crc >> 8]
    assert len(found) == 1


async def test_release_points_the_entry_at_the_code_again(backend: Backend) -> None:
    """A released code is found where it went back, through its own entry rewritten in
    place (no new entry), however often it goes out and back."""
    await create_pool(backend)
    await fill(backend, ["X", "Y", "Z"])
    pos = PosStore(backend)
    bucket, _, crc = codeindex.lookup_args(P, "X")

    def mine(raw: Any) -> int:
        return len([e for e in codeindex.entries(raw) if e[0] == crc >> 8])

    for _ in range(3):
        handed = await issue_batch(backend, P, POOL, [IssueRequest(count=3)])
        assert handed[0].codes[0] == "X"
        await pos.release(P, "Y")
        await pos.release(P, "Z")
        await pos.release(P, "X")  # X now last: Y, Z, X
        assert await _lookup(backend, "X") == [-11, POOL.encode()]
        assert await _lookup(backend, "Y") == [-11, POOL.encode()]
        assert mine(await backend.client.get(bucket)) == 1
        await issue_batch(backend, P, POOL, [IssueRequest(count=2)])  # Y, Z out
        await pos.release(P, "Y")
        await pos.release(P, "Z")  # X, Y, Z again
    assert await backend.client.lrange(keys.pool_available(P, POOL), 0, -1) == [b"X", b"Y", b"Z"]
    assert await _lookup(backend, "Z") == [-11, POOL.encode()]


async def test_lua_crc32_is_zlibs(backend: Backend) -> None:
    """The hold reaper hashes codes in Lua (common.lua crc32): the same CRC-32 as
    zlib's, so its index buckets are the ones Python writes."""
    codes = ["A", "SAVE10", "C000123456", "ÄÖü-€", "x" * 64]
    src = script_sources()["index_append"].split("local prefix")[0]
    body = (
        src + "local out = {} for i = 1, #ARGV do out[i] = tostring(crc32(ARGV[i])) end return out"
    )
    got = await backend.client.eval(body, 1, keys.code_index_uploads(P), *codes)
    assert [int(x) for x in got] == [codeindex.crc32(c.encode()) for c in codes]


async def test_read_codes_pairs_codes_with_records(backend: Backend) -> None:
    await create_pool(backend)
    await fill(backend, ["A", "B"])
    await issue_batch(backend, P, POOL, [IssueRequest(count=2, user_id="u")])
    flat = await backend.scripts.run(
        "read_codes", [keys.pool_log(P, POOL), keys.issued(P)], [1, 10]
    )
    assert flat[0] == b"B" and parse_record(flat[1])[0].user_id == "u"


async def test_resume_commit_after_interruption(backend: Backend) -> None:
    await create_pool(backend)
    await fill(backend, ["A"])
    staging = keys.pool_staging(P, POOL, "crash")
    await backend.client.rpush(staging, "B", "C", "D", "E")
    # One slice moved, then the process "dies": the mark stays behind.
    first = await backend.scripts.run(
        "commit_upload",
        [keys.pool(P, POOL), keys.pool_available(P, POOL), staging, keys.project_stored(P)],
        [2, "crash", 0],
    )
    assert first == [2, 3, 3]
    assert await backend.client.hexists(keys.pool(P, POOL), "committing:crash")
    await backend.client.sadd(keys.pools(P), POOL)
    assert await CodeStore(backend).resume_commits(P) == 1
    assert await _counters(backend) == (5, 5, 0)
    assert not await backend.client.hexists(keys.pool(P, POOL), "committing:crash")


async def test_issue_rechecks_cached_credentials(backend: Backend) -> None:
    await create_pool(backend)
    await fill(backend, ["A", "B", "C"])
    await backend.client.hset(keys.api_keys(P), "k1", "{}")
    await backend.client.hset(keys.project(P), "user_token_secret", "s1")
    results = await issue_batch(
        backend,
        P,
        POOL,
        [
            IssueRequest(count=1, credential=Credential("key", "k1")),
            IssueRequest(count=1, credential=Credential("key", "revoked")),
            IssueRequest(count=1, user_id="u", credential=Credential("user", "s1")),
            IssueRequest(count=1, user_id="u", credential=Credential("user", "old-secret")),
        ],
    )
    assert [r.status for r in results] == [
        Status.OK,
        Status.STALE_CREDENTIAL,
        Status.OK,
        Status.STALE_CREDENTIAL,
    ]
    assert await _counters(backend) == (3, 1, 2)


async def _index_keys(backend: Backend) -> list[bytes]:
    return sorted([k async for k in backend.client.scan_iter(match=keys.code_index(P, "*"))])


async def test_deleting_a_pool_takes_its_entries_out(backend: Backend) -> None:
    """A deleted pool's codes are unknown at once, and its entries (uploads and
    releases) leave the index; another pool's entries of the same codes stay."""
    await create_pool(backend)
    await fill(backend, ["S1", "S2", "S3"])
    await issue_batch(backend, P, POOL, [IssueRequest(count=1)])
    await PosStore(backend).release(P, "S1")  # an entry of the identity upload
    await backend.scripts.run(
        "create_pool",
        [keys.pool_names(P), keys.pools(P), keys.pool(P, "pool2")],
        ["pool2", "Two", 1.0, "", "", "{}", ""],
    )
    other = await UploadIndex.new(backend.scripts, P, "pool2")
    staging = keys.pool_staging(P, "pool2", "s2")
    assert await CodeStore(backend).stage(P, "pool2", staging, other, [b"S2"], "skip", 0) == (
        1,
        0,
    )
    assert len(await _index_keys(backend)) == 3
    await PoolStore(backend).delete(P, POOL)
    assert await _lookup(backend, "S1") == [-10]
    assert await _lookup(backend, "S3") == [-10]
    bucket, _, _ = codeindex.lookup_args(P, "S2")
    assert await _index_keys(backend) == [bucket.encode()]
    assert len(codeindex.entries(await backend.client.get(bucket))) == 1
    left = await backend.client.hgetall(keys.code_index_uploads(P))
    assert {codeindex.pool_of(v) for f, v in left.items() if f != b"seq"} == {"pool2"}


def test_the_hand_out_path_carries_none_of_the_index() -> None:
    """issue.lua (purchases, pool issue) never reads the index, so it does not include
    its Lua (each local function there would be a closure built on every call)."""
    sources = script_sources()
    assert "local function cx_" not in sources["issue"]
    assert "local function crc32" not in sources["issue"]
    assert "local function cx_available" in sources["validate"]
