"""EmbeddedRedis: the private redis-server `codepool serve` starts when no URL is set."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.exceptions

import codepool
from codepool.cli import main
from codepool.embedded import EmbeddedRedis
from codepool.embedded_binary import (
    JEMALLOC,
    MIN_REDIS_VERSION,
    find_jemalloc,
    find_redis_server,
    redis_server_version,
)
from codepool.embedded_error import EmbeddedRedisError
from codepool.embedded_recovery import redis_servers_in
from codepool.serve import check_root_key
from codepool.settings import SettingsError, load_settings
from tests.servers import pid_alive, runs_on_jemalloc, wait_gone

pytestmark = pytest.mark.real


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5.0)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path / "redis") as embedded:
        yield embedded


def test_bundled_binary_is_found_and_recent_enough() -> None:
    executable = find_redis_server()
    assert os.access(executable, os.X_OK)
    assert redis_server_version(executable) >= MIN_REDIS_VERSION


def test_the_systems_jemalloc_is_preloaded_and_libc_on_request(tmp_path: Path) -> None:
    """CODEPOOL_REDIS_MALLOC: "auto" runs redis-server on jemalloc where the system has
    it (CI installs it: there this must not skip), "libc" on the build's own malloc."""
    if find_jemalloc() is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{JEMALLOC} missing in CI (.ci/run installs libjemalloc2)")
        pytest.skip(f"no {JEMALLOC} on this machine")
    with EmbeddedRedis(tmp_path / "auto") as auto:
        assert auto.preload == find_jemalloc()
        assert runs_on_jemalloc(auto.pid)
        client = _client(auto.url)
        client.rpush("l", *range(1000))
        assert client.llen("l") == 1000
        assert client.info("memory")["used_memory"] > 0  # its accounting works on jemalloc
    with EmbeddedRedis(tmp_path / "libc", malloc="libc") as libc:
        assert libc.preload is None
        assert libc.pid is not None and pid_alive(libc.pid)
        assert not runs_on_jemalloc(libc.pid)


def test_jemalloc_required_but_missing_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("codepool.embedded.find_jemalloc", lambda: None)
    with pytest.raises(EmbeddedRedisError, match="libjemalloc2"):
        EmbeddedRedis(tmp_path / "r", malloc="jemalloc")
    assert EmbeddedRedis(tmp_path / "r").preload is None  # auto: the build's own malloc


def test_an_unknown_allocator_is_a_settings_error() -> None:
    assert load_settings({"CODEPOOL_REDIS_MALLOC": "libc"}).redis_malloc == "libc"
    with pytest.raises(SettingsError, match="redis_malloc"):
        load_settings({"CODEPOOL_REDIS_MALLOC": "tcmalloc"})


def test_answers_on_a_private_unix_socket_with_safe_settings(server: EmbeddedRedis) -> None:
    assert server.url == f"unix://{server.directory}/redis.sock"
    assert stat.S_IMODE(server.socket_path.stat().st_mode) == 0o700
    assert server.pid is not None
    assert redis_servers_in(server.directory) == [server.pid]
    with _client(server.url) as client:
        assert client.ping()
        config = client.config_get("*")
    assert config["maxmemory-policy"] == "noeviction"
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "everysec"
    assert config["save"] == "3600 1"  # hourly: the AOF and codepool's snapshots do the rest
    assert config["port"] == "0"  # no TCP listener at all
    assert config["list-max-ziplist-size"] == "-4"  # 32 KB list nodes: short LINDEX walks


def test_data_survives_a_graceful_restart(server: EmbeddedRedis) -> None:
    with _client(server.url) as client:
        client.set("code", "A1")
    server.stop()
    server.start()
    with _client(server.url) as client:
        assert client.get("code") == b"A1"


def test_stop_with_the_aof_on_writes_no_rdb(server: EmbeddedRedis) -> None:
    # SHUTDOWN NOSAVE: the AOF holds every write, and a final RDB of a big sale's data
    # took longer than stop() waits. Everything written just before stop() is kept.
    with _client(server.url) as client:
        client.hset("issued", mapping={f"C{i:06d}": "pl1" for i in range(20_000)})
    server.stop()
    assert not (server.directory / "dump.rdb").exists()
    assert "DB saved on disk" not in (server.directory / "redis.log").read_text()
    server.start()
    with _client(server.url) as client:
        assert client.hlen("issued") == 20_000


def test_stop_writes_the_rdb_if_the_aof_was_turned_off_at_runtime(server: EmbeddedRedis) -> None:
    with _client(server.url) as client:
        client.config_set("appendonly", "no")
        client.set("code", "A1")
    server.stop()
    assert (server.directory / "dump.rdb").stat().st_size > 0


def test_what_a_save_killed_midway_left_is_removed_at_start(tmp_path: Path) -> None:
    directory = tmp_path / "redis"
    directory.mkdir()
    left = [directory / "temp-4242.rdb", directory / "temp-rewriteaof-bg-4243.aof"]
    for path in left:
        path.write_bytes(b"REDIS0009 half written")
    (directory / "notes.txt").write_text("not redis's")
    with EmbeddedRedis(directory) as embedded, _client(embedded.url) as client:
        assert client.ping()
    assert [path for path in left if path.exists()] == []
    assert (directory / "notes.txt").read_text() == "not redis's"


def test_acknowledged_writes_survive_a_crash(server: EmbeddedRedis) -> None:
    with _client(server.url) as client:
        client.set("code", "A1")
    assert server.pid is not None
    # No shutdown, no final RDB: only what the AOF holds is there afterwards.
    os.kill(server.pid, signal.SIGKILL)
    server.stop()
    assert not (server.directory / "dump.rdb").exists()
    server.start()
    with _client(server.url) as client:
        assert client.get("code") == b"A1"


def test_an_rdb_without_aof_is_loaded_and_turned_into_an_aof(tmp_path: Path) -> None:
    directory = tmp_path / "redis"
    with (
        EmbeddedRedis(directory, appendonly=False) as without_aof,
        _client(without_aof.url) as client,
    ):
        client.set("code", "A1")
    assert (directory / "dump.rdb").stat().st_size > 0
    assert not (directory / "appendonly.aof").exists()
    # With appendonly on, redis would read only the (missing) AOF and come up empty.
    with EmbeddedRedis(directory) as with_aof, _client(with_aof.url) as client:
        assert client.get("code") == b"A1"
        assert client.config_get("appendonly") == {"appendonly": "yes"}
    (directory / "dump.rdb").unlink()
    with EmbeddedRedis(directory) as again, _client(again.url) as client:
        assert client.get("code") == b"A1"


def test_stop_leaves_no_process_and_is_idempotent(server: EmbeddedRedis) -> None:
    pid = server.pid
    assert pid is not None
    server.stop()
    assert not pid_alive(pid)
    assert redis_servers_in(server.directory) == []
    assert not server.socket_path.exists()
    assert server.pid is None
    with pytest.raises(EmbeddedRedisError, match="not running"):
        _ = server.url
    server.stop()


def test_only_one_server_per_directory(server: EmbeddedRedis) -> None:
    with pytest.raises(EmbeddedRedisError, match="in use"):
        EmbeddedRedis(server.directory).start()
    # The refused attempt changed nothing for the running one.
    with _client(server.url) as client:
        assert client.ping()


def _wait_until_serving(url: str, process: subprocess.Popen[bytes]) -> None:
    with _client(url) as client:
        while True:
            assert process.poll() is None, "redis-server exited"
            try:
                client.ping()
            except redis.exceptions.ConnectionError:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(0.02)  # a pause that ends early if it dies
            else:
                return


def test_a_stray_server_in_the_directory_is_stopped_first(tmp_path: Path) -> None:
    directory = tmp_path / "redis"
    with EmbeddedRedis(directory, appendonly=False) as first:
        config = first.config_path
    # A server its owner lost track of (started by hand, or PDEATHSIG unavailable):
    # two servers on one AOF would corrupt it.
    with subprocess.Popen(
        [find_redis_server(), str(config)], cwd=directory, stdout=subprocess.DEVNULL
    ) as stray:
        _wait_until_serving(f"unix://{directory}/redis.sock", stray)
        assert redis_servers_in(directory) == [stray.pid]
        with EmbeddedRedis(directory, appendonly=False) as second:
            assert stray.poll() == 0  # SIGTERM: a clean shutdown
            assert redis_servers_in(directory) == [second.pid]


def test_dies_with_its_parent(tmp_path: Path) -> None:
    directory = tmp_path / "redis"
    script = textwrap.dedent(
        """
        import signal, sys
        from pathlib import Path
        from codepool.embedded import EmbeddedRedis

        server = EmbeddedRedis(Path(sys.argv[1]), appendonly=False)
        server.start()
        print(server.pid, flush=True)
        signal.pause()
        """
    )
    package_root = str(Path(codepool.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([package_root, *sys.path])}
    with subprocess.Popen(
        [sys.executable, "-c", script, str(directory)],
        stdout=subprocess.PIPE,
        env=env,
    ) as parent:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line, "the parent process failed to start its redis-server"
        redis_pid = int(line)
        assert pid_alive(redis_pid)
        parent.kill()
        parent.wait()
    assert wait_gone([redis_pid], timeout=5.0) == []
    assert redis_servers_in(directory) == []


@pytest.mark.parametrize("case", ["long path", "unix_socket=False"])
def test_falls_back_to_password_protected_tcp(tmp_path: Path, case: str) -> None:
    if case == "long path":
        directory = tmp_path / ("d" * (100 - len(str(tmp_path))))
        embedded = EmbeddedRedis(directory)
    else:
        directory = tmp_path / "redis"
        embedded = EmbeddedRedis(directory, unix_socket=False)
    with embedded:
        assert embedded.url.startswith("redis://:")
        assert "@127.0.0.1:" in embedded.url
        assert not embedded.socket_path.exists()
        with _client(embedded.url) as client:
            assert client.ping()
        port = embedded.url.rsplit(":", 1)[1].split("/")[0]
        with (
            _client(f"redis://127.0.0.1:{port}/0") as anonymous,
            pytest.raises(redis.exceptions.AuthenticationError),
        ):
            anonymous.get("x")


def test_a_server_that_dies_at_startup_is_reported_with_its_log(tmp_path: Path) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --version ]; then echo "Redis server v=6.2.0"; exit 0; fi\n'
        "echo '*** FATAL CONFIG FILE ERROR (Redis 6.2.0) ***' >&2\n"
        "exit 1\n"
    )
    fake.chmod(0o755)
    embedded = EmbeddedRedis(tmp_path / "redis", executable=str(fake))
    with pytest.raises(EmbeddedRedisError, match=r"exited with code 1(.|\n)*FATAL CONFIG"):
        embedded.start()
    # Nothing left behind: the directory can be used right away.
    with EmbeddedRedis(tmp_path / "redis", appendonly=False) as real, _client(real.url) as c:
        assert c.ping()


def test_too_old_a_redis_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text('#!/bin/sh\necho "Redis server v=5.0.7 sha=00000000:0"\n')
    fake.chmod(0o755)
    with pytest.raises(EmbeddedRedisError, match=r"5\.0\.7"):
        EmbeddedRedis(tmp_path / "redis", executable=str(fake)).start()


def test_files_that_hold_secrets_are_private_even_in_an_old_directory(tmp_path: Path) -> None:
    directory = tmp_path / "redis"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)  # as an earlier codepool (or a umask 022 mkdir) left it
    (directory / "appendonly.aof").write_bytes(b"")
    (directory / "appendonly.aof").chmod(0o644)
    with EmbeddedRedis(directory) as embedded, _client(embedded.url) as client:
        client.set("secret", "s3cret")
        client.bgrewriteaof()
        client.save()
        files = [p for p in directory.rglob("*") if p.is_file() and not p.is_socket()]
        assert {p.name for p in files} >= {"appendonly.aof", "dump.rdb"}
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


def test_serve_refuses_a_short_root_key_unless_in_development(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CODEPOOL_ROOT_KEY", "short-key")
    monkeypatch.setenv("CODEPOOL_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("CODEPOOL_DEV", raising=False)
    assert main(["serve"]) == 2
    assert "at least 32 characters" in capsys.readouterr().err
    assert not (tmp_path / "redis").exists()  # refused before anything started
    check_root_key(load_settings({"CODEPOOL_ROOT_KEY": "short-key", "CODEPOOL_DEV": "1"}))
    check_root_key(load_settings({"CODEPOOL_ROOT_KEY": "k" * 32}))
    check_root_key(load_settings({}))  # no root key: no root access, nothing to guess


def test_snapshot_outside_the_service_directory_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CODEPOOL_REDIS_URL", raising=False)
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("CODEPOOL_DATA_DIR", str(elsewhere))
    assert main(["snapshot"]) == 2
    assert "no codepool data in" in capsys.readouterr().err
    assert not elsewhere.exists()  # no empty Redis was started there, no snapshot written

    # A Redis that holds no codepool state (here: a stray key only) has nothing to save.
    with EmbeddedRedis(elsewhere / "redis") as embedded, _client(embedded.url) as client:
        client.set("not-codepool", "1")
        assert main(["snapshot"]) == 2
        assert "holds no codepool state" in capsys.readouterr().err
    assert not (elsewhere / "snapshots").exists() or not any((elsewhere / "snapshots").iterdir())
