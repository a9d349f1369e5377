"""Lua scripts of the scrape hot path, each call one packed EVALSHA on a connection kept
per thread.

Every scrape makes two script calls (lock + read the target; save the state + unlock).
Through redis-py 8's command path (argument encoders, the pool's lock, observability
hooks on every command and connection) a call cost 88 us of CPU; packed here and sent on
a connection the thread keeps, 31 us, of which the two system calls are most
(bench/RESULTS.md). The reply is read by redis-py's own parser. Anything unusual (the
script not loaded, a broken connection) goes through redis-py's `Script`, which loads
the script and retries as configured.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import redis


def pack_command(*args: str | bytes | int) -> bytes:
    """A command in RESP: an array of bulk strings (str as UTF-8, int in decimal)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class LuaScript:
    """`script(keys=[...], args=[...])`, as redis-py's `Script` is called."""

    def __init__(self, client: redis.Redis, source: str) -> None:
        self._script = client.register_script(source)
        self._client = client
        self._local = threading.local()

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():  # none yet, or a forked child
            pool = self._client.connection_pool
            conn = self._local.conn = pool.connection_class(**pool.connection_kwargs)
            self._local.pid = os.getpid()
        return conn

    def __call__(self, keys: Sequence[str], args: Sequence[str | bytes | int]) -> Any:
        conn = self._connection()
        try:
            conn.send_packed_command(
                [pack_command("EVALSHA", self._script.sha, len(keys), *keys, *args)])
            return conn.read_response()
        except redis.exceptions.NoScriptError:
            pass  # Redis restarted or SCRIPT FLUSH: redis-py loads it again below
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
            conn.disconnect()  # connects anew at the next call
        return self._script(keys=keys, args=args)

    def close(self) -> None:
        """Close this thread's connection (the others close with their threads)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.disconnect()
