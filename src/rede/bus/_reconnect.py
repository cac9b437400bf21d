"""Redis calls that survive a lost connection, and the bus's reachability.

A call that fails with a lost connection (``ConnectionError``/``TimeoutError`` from
redis-py) is retried with exponential backoff until it works, the bus closes, its deadline
passes (``TimeoutError``) or ``reconnect_timeout_s`` is spent (:class:`BusError`). The first
call that fails marks the server unreachable and the first that works again marks it
reachable; watchers hear of both (:meth:`Bus.watch_reachability`), and reaching the server
again wakes every call waiting to retry, so they all resume at once instead of at the end
of their own backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    ClusterDownError,
    MasterDownError,
    RedisClusterUnreachableError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from rede.backoff import doubling
from rede.errors import BusError

log = logging.getLogger("rede.bus.redis")

T = TypeVar("T")

RETRYABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterDownError,
    TryAgainError,
    MasterDownError,
    RedisClusterUnreachableError,
)
"""A lost connection, and a cluster between two masters (a failover, a slot moving)."""
_CREDENTIALS = (AuthenticationError, AuthorizationError)


class Reconnecting:
    """Runs the calls of one bus: retries, reachability and its watchers."""

    def __init__(
        self,
        url: str,
        timeout_s: float,
        check_open: Callable[[], None],
        *,
        first_s: float | None = None,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.first_timeout_s = timeout_s if first_s is None else first_s
        self.connected = False
        """Whether any call ever got through: until then, a failure is given up sooner."""
        self._unreachable: BusError | None = None
        """Set when the first connection was given up: later calls fail at once, not again
        after ``first_timeout_s`` each."""
        self._check_open = check_open
        self.reachable = True
        self._wake = asyncio.Event()
        """Set (and replaced) when the server answers again or the bus closes."""
        self._watchers: dict[int, Callable[[bool], None]] = {}
        self._next_watch = 0

    def watch(self, callback: Callable[[bool], None]) -> Callable[[], None]:
        key = self._next_watch
        self._next_watch += 1
        self._watchers[key] = callback
        if not self.reachable:
            callback(False)

        def cancel() -> None:
            self._watchers.pop(key, None)

        return cancel

    def _set(self, reachable: bool) -> None:
        self.connected = self.connected or reachable
        if reachable == self.reachable:
            return
        self.reachable = reachable
        if reachable:
            self.wake()
        for callback in list(self._watchers.values()):
            callback(reachable)

    def wake(self) -> None:
        """Wake every call waiting to retry (the server is back, or the bus closed)."""
        self._wake.set()
        self._wake = asyncio.Event()

    async def call(self, op: Callable[[], Awaitable[T]], deadline: float | None = None) -> T:
        try:
            result = await op()
        except _CREDENTIALS as exc:
            raise self._credentials_error(exc) from exc
        except RETRYABLE as exc:
            first = exc
        else:
            self._set(True)
            return result
        self._set(False)
        if self._unreachable is not None and not self.connected:
            raise self._unreachable
        return await self._retry(op, first, deadline)

    async def _retry(
        self, op: Callable[[], Awaitable[T]], exc: Exception, deadline: float | None
    ) -> T:
        loop = asyncio.get_running_loop()
        first = not self.connected
        limit = self.first_timeout_s if first else self.timeout_s
        give_up = loop.time() + limit
        if not first:
            log.warning("lost the connection to Redis at %s (%s); reconnecting", self.url, exc)
        tries = 0
        while True:
            self._check_open()
            now = loop.time()
            if now >= give_up:
                if first and not self.connected:
                    self._unreachable = BusError(
                        f"cannot reach Redis at {self.url} ({exc}): no connection could be "
                        f"made in {limit:g} s; check the address and that the server is up"
                    )
                    raise self._unreachable from exc
                raise BusError(
                    f"cannot reach Redis at {self.url}: still failing after "
                    f"{limit:g} s ({exc}); check that the server is up, or raise "
                    "bus.reconnect_timeout_s in the network YAML"
                ) from exc
            delay = 0.0 if tries == 0 else doubling(0.05, tries - 1, 2.0)
            wait = min(delay, give_up - now)
            if deadline is not None:
                if now >= deadline:
                    raise TimeoutError
                wait = min(wait, deadline - now)
            if wait > 0 and not self.reachable:  # else another call got through: try now
                wake = self._wake
                try:
                    async with asyncio.timeout(wait):
                        await wake.wait()
                except TimeoutError:
                    pass
                self._check_open()
            tries += 1
            try:
                result = await op()
            except _CREDENTIALS as err:
                raise self._credentials_error(err) from err
            except RETRYABLE as err:
                exc = err
                self._set(False)
                continue
            log.warning("reconnected to Redis at %s", self.url)
            self._set(True)
            return result

    def _credentials_error(self, exc: Exception) -> BusError:
        return BusError(
            f"Redis at {self.url} refused the credentials ({exc}): check the user and "
            "password in the bus URL (redis://user:password@host:port/db)"
        )
