"""Per-experiment publish/subscribe channels for live progress.

In memory by default (one service process); over Redis when ``EDGEOPT_REDIS_URL`` is set, so several API processes
see the same stream. Either way each subscriber has its own bounded queue: a slow WebSocket client never slows the
job or the other clients. A subscriber that falls too far behind is told so and dropped; its client reconnects and
the snapshot it receives on connect covers the gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any, Protocol

log = logging.getLogger(__name__)

SUBSCRIBER_QUEUE_SIZE = 1000
LAGGED = {"type": "lagged"}  # sentinel put on a subscriber's queue when it overflowed
REDIS_PREFIX = "edgeopt:experiment:"


class Subscription:
    def __init__(self, broker: LocalBroker, experiment_id: str) -> None:
        self.experiment_id = experiment_id
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=SUBSCRIBER_QUEUE_SIZE)
        self.lagged = False
        self._broker = broker

    def offer(self, message: dict[str, Any]) -> None:
        if self.lagged:
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.lagged = True
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.queue.put_nowait(LAGGED)

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            message = await self.queue.get()
            if message is LAGGED:
                return
            yield message


class Broker(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, experiment_id: str, message: dict[str, Any]) -> None: ...

    def subscribe(self, experiment_id: str) -> contextlib.AbstractAsyncContextManager[Subscription]: ...


class LocalBroker:
    """Fan-out to the subscribers of this process. Must be used from the event loop's thread."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[Subscription]] = defaultdict(set)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        for subs in self._subscribers.values():
            for sub in subs:
                sub.offer(LAGGED)
        self._subscribers.clear()

    def deliver(self, experiment_id: str, message: dict[str, Any]) -> None:
        for sub in list(self._subscribers.get(experiment_id, ())):
            sub.offer(message)

    async def publish(self, experiment_id: str, message: dict[str, Any]) -> None:
        self.deliver(experiment_id, message)

    def subscriber_count(self, experiment_id: str) -> int:
        return len(self._subscribers.get(experiment_id, ()))

    @contextlib.asynccontextmanager
    async def subscribe(self, experiment_id: str) -> AsyncIterator[Subscription]:
        sub = Subscription(self, experiment_id)
        self._subscribers[experiment_id].add(sub)
        try:
            yield sub
        finally:
            subs = self._subscribers.get(experiment_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    self._subscribers.pop(experiment_id, None)


class RedisBroker(LocalBroker):
    """Publishes through Redis; one pattern subscription per process fans messages out locally.

    Publishing goes to Redis only, and local subscribers receive it back from Redis like everyone else, so every
    process sees the same order.
    """

    def __init__(self, url: str) -> None:
        super().__init__()
        self._url = url
        self._redis: Any = None
        self._listener: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(self._url)
        await self._redis.ping()
        self._listener = asyncio.create_task(self._listen(), name="edgeopt-redis-listener")
        await asyncio.wait_for(self._ready.wait(), timeout=10)

    async def _listen(self) -> None:
        pubsub = self._redis.pubsub()
        await pubsub.psubscribe(f"{REDIS_PREFIX}*")
        self._ready.set()
        try:
            async for item in pubsub.listen():
                if item.get("type") != "pmessage":
                    continue
                channel = item["channel"].decode() if isinstance(item["channel"], bytes) else item["channel"]
                try:
                    message = json.loads(item["data"])
                except (TypeError, ValueError):
                    log.warning("ignoring a malformed message on %s", channel)
                    continue
                self.deliver(channel.removeprefix(REDIS_PREFIX), message)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        if self._redis is not None:
            await self._redis.aclose()
        await super().stop()

    async def publish(self, experiment_id: str, message: dict[str, Any]) -> None:
        await self._redis.publish(f"{REDIS_PREFIX}{experiment_id}", json.dumps(message))


def make_broker(redis_url: str | None) -> LocalBroker:
    return RedisBroker(redis_url) if redis_url else LocalBroker()
