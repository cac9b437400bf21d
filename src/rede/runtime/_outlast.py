"""Outlasting a bus outage: what an agent keeps doing when its bus server is away longer
than the bus's own reconnect window.

A networked bus retries a call for ``reconnect_timeout_s`` and then raises
:class:`~rede.errors.BusError`. A long-running agent process must not end on that: the
server may come back in a minute or an hour. :func:`until_done` retries one call (a reply,
an acknowledgement) with doubling waits until it works; :func:`resubscribing` keeps a reader
alive by subscribing again after the bus failed under it. Only a closed bus
(:class:`~rede.errors.ClosedBusError`) or a cancellation ends either.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from rede.backoff import doubling
from rede.bus import Subscription
from rede.errors import BusError, ClosedBusError

log = logging.getLogger("rede.runtime")

T = TypeVar("T")

FIRST_WAIT_S = 0.05
MAX_WAIT_S = 5.0
"""Waits between tries after the bus gave up; each try itself already waited through the
bus's ``reconnect_timeout_s``, so a long outage costs few tries."""


async def until_done(op: Callable[[], Awaitable[T]], what: str) -> T:
    """``await op()`` until it does not raise :class:`BusError` (a closed bus still ends it)."""
    tries = 0
    while True:
        try:
            return await op()
        except ClosedBusError:
            raise
        except BusError as exc:
            wait = doubling(FIRST_WAIT_S, tries, MAX_WAIT_S)
            log.warning("%s failed (%s); trying again in %.2g s", what, exc, wait)
        tries += 1
        await asyncio.sleep(wait)


async def resubscribing(
    sub: Subscription,
    subscribe: Callable[[], Awaitable[Subscription]],
    serve: Callable[[Subscription], Awaitable[None]],
    what: str,
) -> None:
    """``await serve(sub)``; when it fails with :class:`BusError`, close that subscription,
    make a new one with ``subscribe`` (retried until it works) and serve that, for ever."""
    while True:
        try:
            async with sub:
                await serve(sub)
            return
        except ClosedBusError:
            raise
        except BusError as exc:
            log.warning("%s lost the bus (%s); subscribing again", what, exc)
        sub = await until_done(subscribe, f"subscribing for {what}")
