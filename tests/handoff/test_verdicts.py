"""A false-alarm sight taught to the events instance that owns the camera, over a private
nats-server: the owner answers, the others stay silent, and with no owner the caller is
told so in time (the API answers 503)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from hazardwatch.errors import DetectorUnavailableError
from hazardwatch.handoff.link import BrokerLink
from hazardwatch.handoff.verdicts import VerdictRouter


class Detector:
    def __init__(self) -> None:
        self.learned: list[tuple[str, list[float]]] = []

    def learn(self, camera: str, embedding: npt.NDArray[Any]) -> int:
        self.learned.append((camera, [float(x) for x in embedding]))
        return len(self.learned)


def test_a_verdict_reaches_the_owner_and_only_the_owner(link: BrokerLink) -> None:
    owner, other = Detector(), Detector()
    routers = [
        VerdictRouter(link, lambda camera: camera == "dock", lambda: owner.learn),
        VerdictRouter(link, lambda camera: camera == "gate", lambda: other.learn),
        VerdictRouter(link, lambda camera: False, lambda: None, timeout_s=1.0),  # standby
    ]
    for router in routers:
        router.start()
    try:
        sight = np.array([0.5, -0.25, 1.0], np.float32)
        assert routers[2].learn("dock", sight) == 1  # from a standby, over the broker
        assert routers[1].learn("dock", sight) == 2  # from another owner
        assert routers[0].learn("dock", sight) == 3  # its own, without the broker
        assert owner.learned == [("dock", [0.5, -0.25, 1.0])] * 3 and other.learned == []
        assert (routers[0].answered, routers[1].answered) == (2, 0)
        with pytest.raises(DetectorUnavailableError, match="camera 'yard'"):
            routers[2].learn("yard", sight)  # nobody owns it: told within the timeout
    finally:
        for router in routers:
            router.stop()
