"""Progress channels: in memory and over a real Redis, the same behaviour."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

from edgeopt.service.events import SUBSCRIBER_QUEUE_SIZE, LocalBroker, RedisBroker

REDIS_URL = os.environ.get("EDGEOPT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _redis_available() -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
        return True
    except OSError:
        return False


def _brokers() -> list[object]:
    params: list[object] = [pytest.param("memory", id="memory")]
    if _redis_available() or os.environ.get("EDGEOPT_REQUIRE_SERVICES") == "1":
        params.append(pytest.param("redis", id="redis", marks=pytest.mark.redis))
    return params


def _make(kind: str) -> LocalBroker:
    return LocalBroker() if kind == "memory" else RedisBroker(REDIS_URL)


async def _collect(broker: LocalBroker, experiment: str, count: int, ready: asyncio.Event) -> list[dict]:
    got: list[dict] = []
    async with broker.subscribe(experiment) as sub:
        ready.set()
        async for message in sub:
            got.append(message)
            if len(got) == count:
                break
    return got


@pytest.mark.parametrize("kind", _brokers())
def test_every_subscriber_gets_every_message_in_order(kind: str) -> None:
    async def scenario() -> None:
        broker = _make(kind)
        await broker.start()
        experiment = uuid.uuid4().hex
        readies = [asyncio.Event() for _ in range(5)]
        tasks = [asyncio.create_task(_collect(broker, experiment, 50, r)) for r in readies]
        await asyncio.gather(*(r.wait() for r in readies))
        other = uuid.uuid4().hex
        for i in range(50):
            await broker.publish(other, {"i": -1})  # another experiment's channel must not leak in
            await broker.publish(experiment, {"i": i})
        results = await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)
        await broker.stop()
        for got in results:
            assert [m["i"] for m in got] == list(range(50))

    asyncio.run(scenario())


def test_a_slow_subscriber_is_dropped_without_blocking_the_others() -> None:
    async def scenario() -> None:
        broker = LocalBroker()
        async with broker.subscribe("x") as slow, broker.subscribe("x") as fast:
            for i in range(SUBSCRIBER_QUEUE_SIZE + 10):
                await broker.publish("x", {"i": i})
                if not fast.queue.empty():
                    fast.queue.get_nowait()  # the fast client keeps up
            assert slow.lagged and not fast.lagged
            received = [m async for m in slow]  # ends instead of hanging: the client must reconnect
            assert len(received) < SUBSCRIBER_QUEUE_SIZE + 10
        assert broker.subscriber_count("x") == 0

    asyncio.run(scenario())
