"""clymene.lua against a real Redis: the packed call gives what redis-py's Script gives,
and recovers from a flushed script cache, a restarted server and a forked child."""

from __future__ import annotations

import os

import pytest
import redis

from clymene.lua import LuaScript, pack_command
from tests.servers import start_redis

ECHO = "return {KEYS[1], ARGV[1], ARGV[2], redis.call('incr', KEYS[2])}"


@pytest.fixture
def server(tmp_path):
    srv = start_redis(tmp_path)
    yield srv
    srv.stop()


def test_pack_command_is_resp():
    assert pack_command("SET", "k", b"\x00v", 12) == (
        b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n\x00v\r\n$2\r\n12\r\n")
    assert pack_command("GET", "ü") == b"*2\r\n$3\r\nGET\r\n$2\r\n\xc3\xbc\r\n"


def test_same_reply_as_redis_py(server):
    client = redis.Redis.from_url(server.redis_url(0))
    lean = LuaScript(client, ECHO)
    plain = client.register_script(ECHO)
    assert lean(keys=["a", "n"], args=["x", 5]) == [b"a", b"x", b"5", 1]
    assert plain(keys=["a", "n"], args=["x", 5]) == [b"a", b"x", b"5", 2]
    with pytest.raises(redis.exceptions.ResponseError):
        LuaScript(client, "return redis.error_reply('boom')")(keys=["a"], args=[])
    assert lean(keys=["a", "n"], args=["y", ""]) == [b"a", b"y", b"", 3]  # still usable


def test_flushed_scripts_and_a_restarted_server(server):
    client = redis.Redis.from_url(server.redis_url(0))
    lean = LuaScript(client, ECHO)
    assert lean(keys=["a", "n"], args=["x", 1])[3] == 1
    client.script_flush()
    assert lean(keys=["a", "n"], args=["x", 1])[3] == 2  # loaded again
    client.client_kill_filter(_type="normal", skipme=True)  # our kept connection dies
    assert lean(keys=["a", "n"], args=["x", 1])[3] == 3
    assert lean(keys=["a", "n"], args=["x", 1])[3] == 4  # on a new kept connection


def test_a_forked_child_uses_a_connection_of_its_own(server):
    client = redis.Redis.from_url(server.redis_url(0))
    lean = LuaScript(client, ECHO)
    assert lean(keys=["a", "n"], args=["x", 1])[3] == 1
    pid = os.fork()
    if pid == 0:  # the child: its calls must not interleave with the parent's socket
        ok = all(lean(keys=["a", "c"], args=["x", 1])[0] == b"a" for _ in range(200))
        os._exit(0 if ok else 1)
    for _ in range(200):
        assert lean(keys=["a", "n"], args=["x", 1])[0] == b"a"
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert client.get("c") == b"200" and client.get("n") == b"201"
