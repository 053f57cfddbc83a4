"""``WS /ws/experiments/{id}``: a snapshot first, then the live stream of the experiment's channel.

The socket subscribes before it reads the snapshot, so nothing published in between is lost; a message may then
arrive twice (once folded into the snapshot, once live), which clients handle by keying runs by technique.
Each socket has its own queue (see ``events``): a slow client only ever delays itself.
"""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from sqlalchemy.orm import selectinload
from starlette.concurrency import run_in_threadpool

from edgeopt.service import messages
from edgeopt.service.db.models import Experiment
from edgeopt.service.events import LocalBroker

router = APIRouter()
UNKNOWN_EXPERIMENT = 4404


def _snapshot(websocket: WebSocket, experiment_id: str) -> dict | None:
    with websocket.app.state.session_factory() as session:
        exp = session.get(
            Experiment,
            experiment_id,
            options=[
                selectinload(Experiment.runs),
                selectinload(Experiment.progress),
                selectinload(Experiment.recommendation),
            ],
        )
        return messages.snapshot(exp) if exp is not None else None


async def _wait_for_close(websocket: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await websocket.receive_text()


@router.websocket("/ws/experiments/{experiment_id}")
async def experiment_socket(websocket: WebSocket, experiment_id: str) -> None:
    await websocket.accept()
    broker: LocalBroker = websocket.app.state.broker
    async with broker.subscribe(experiment_id) as subscription:
        snapshot = await run_in_threadpool(_snapshot, websocket, experiment_id)
        if snapshot is None:
            await websocket.close(code=UNKNOWN_EXPERIMENT, reason="Unknown experiment.")
            return
        closed = asyncio.create_task(_wait_for_close(websocket))
        try:
            await websocket.send_json(snapshot)
            stream = subscription.__aiter__()
            while True:
                next_message = asyncio.ensure_future(stream.__anext__())
                done, _ = await asyncio.wait({next_message, closed}, return_when=asyncio.FIRST_COMPLETED)
                if closed in done:
                    next_message.cancel()
                    return
                try:
                    message = next_message.result()
                except StopAsyncIteration:  # fell too far behind: close so the client reconnects to a snapshot
                    await websocket.close(code=1013, reason="Too slow; reconnect for a fresh snapshot.")
                    return
                await websocket.send_json(message)
        except (WebSocketDisconnect, RuntimeError):
            return
        finally:
            closed.cancel()
