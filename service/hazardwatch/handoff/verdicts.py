"""A false-alarm verdict taught to the detector that holds the camera, wherever it runs.

With the scores partitioned, a camera's detector (and its normal references) lives in the
events instance that owns the camera's partition, while any instance serves the API. A
verdict posted to another instance is stored in the database there, and its sight sent
as a NATS request `hazardwatch.normal.learn.<camera>` (the peak's embedding, float32).
Every events instance listens; only the one that owns the camera answers (JSON
`{"references": n}`), so a request nobody owns times out: the caller answers 503 and the
operator posts it again once a new owner holds the partition.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from hazardwatch.errors import DetectorUnavailableError
from hazardwatch.handoff.link import BrokerLink

log = logging.getLogger(__name__)
SUBJECT = "hazardwatch.normal.learn"
TIMEOUT_S = 3.0

Learn = Callable[[str, npt.NDArray[Any]], int]


class VerdictRouter:
    """`learn(camera, embedding)` for the API: this instance's detector when it owns the
    camera, else the owner's over the broker; and the answering side (start, stop)."""

    def __init__(
        self,
        link: BrokerLink,
        owns: Callable[[str], bool],
        local: Callable[[], Learn | None],
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        """`owns(camera)`: this instance holds the camera's partition; `local()`: its
        detector stage's learn_normal (None before it has one)."""
        self.link = link
        self.owns = owns
        self.local = local
        self.timeout_s = timeout_s
        self.answered = 0
        self._subscription: Any = None

    def learn(self, camera: str, embedding: npt.NDArray[Any]) -> int:
        learn = self.local()
        if learn is not None and self.owns(camera):
            return learn(camera, embedding)
        data = np.asarray(embedding, np.float32).tobytes()
        request = self.link.nc.request(f"{SUBJECT}.{camera}", data, timeout=self.timeout_s)
        try:
            reply = self.link.call(request, self.timeout_s + 1)
        except (NoRespondersError, NatsTimeout, TimeoutError):
            raise DetectorUnavailableError(
                f"no events instance holding camera {camera!r} answered within "
                f"{self.timeout_s:.0f} s (its partition is being taken over, or none is up)"
            ) from None
        answer = json.loads(reply.data)
        if "error" in answer:
            raise DetectorUnavailableError(str(answer["error"]))
        return int(answer["references"])

    def start(self) -> None:
        self._subscription = self.link.subscribe(f"{SUBJECT}.>", self._answer)

    def stop(self, timeout: float = 5.0) -> bool:
        self.link.unsubscribe(self._subscription, "verdict router", timeout)
        self._subscription = None
        return True

    async def _answer(self, msg: Any) -> None:
        camera = msg.subject[len(SUBJECT) + 1 :]
        learn = self.local()
        if learn is None or not self.owns(camera):
            return  # the owner answers
        embedding = np.frombuffer(bytes(msg.data), np.float32)
        loop = asyncio.get_running_loop()
        try:
            references = await loop.run_in_executor(None, learn, camera, embedding)
            answer: dict[str, Any] = {"references": references}
        except Exception as exc:
            log.exception("camera %s: a sight from another instance was not learned", camera)
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        self.answered += 1
        await msg.respond(json.dumps(answer).encode())
