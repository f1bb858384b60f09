"""A camera never calibrated learns its normal online, then calibrates itself.

While it learns, the camera runs on the bank's prior (the offset rule: it alerts only on
what the prior calls extreme). `Learning` keeps its hazard classes' probabilities at
`KEEP_HZ` at most, leaving out any time an event is open and `EVENT_MARGIN_S` before an
event's start (an onset is not normal). Once it holds `learning_s` of normal footage, the
calibration (`normal.calibrate`: band, noise, a threshold for the budget) runs on a
thread of its own — replaying half an hour takes a second or two, which the scoring
thread must not wait for — and the detector stage swaps the result in at the camera's
next frame with no event open, then saves it like any calibration.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hazardwatch.detect.evidence import EvidenceParams
from hazardwatch.detect.normal import calibrate
from hazardwatch.records import ClassNormal

log = logging.getLogger(__name__)

KEEP_HZ = 2.0
EVENT_MARGIN_S = 30.0
# A gap with no frame (camera down, motion gate idle between heartbeats) counts this much.
MAX_GAP_S = 5.0


class Learning:
    """One camera's normal footage so far, and its calibration once there is enough."""

    def __init__(
        self,
        camera: str,
        classes: Sequence[str],
        learning_s: float,
        params: EvidenceParams,
        false_alarms_per_day: float,
        definitions: Mapping[str, str] | None = None,
    ) -> None:
        """`definitions`: of the classes by example learned, what defines them (recorded
        with the calibration; other examples are another channel)."""
        self.camera = camera
        self.classes = tuple(classes)
        self.definitions = dict(definitions or {})
        self.learning_s = learning_s
        self._params = params
        self._budget = false_alarms_per_day
        self._times: list[float] = []
        self._values: list[list[float]] = []
        self._thread: threading.Thread | None = None
        self._result: dict[str, ClassNormal] | None = None
        self.failed = False

    @property
    def seconds(self) -> float:
        """Seconds of normal footage held (gaps counted at most `MAX_GAP_S`)."""
        if len(self._times) < 2:
            return 0.0
        return float(np.minimum(np.diff(self._times), MAX_GAP_S).sum())

    @property
    def running(self) -> bool:
        return self._thread is not None

    def add(self, t: float, probabilities: Mapping[str, float], event_open: bool) -> None:
        """One frame: kept when no event is open and `1 / KEEP_HZ` after the last kept."""
        if event_open or self.running:
            return
        if self._times and t - self._times[-1] < 1.0 / KEEP_HZ:
            return
        if not any(name in probabilities for name in self.classes):
            return
        # A class this frame has no score for (a class by example a worker of another
        # model cannot score) holds NaN: it is left out of the calibration, not the rest.
        self._times.append(t)
        self._values.append([float(probabilities.get(name, np.nan)) for name in self.classes])

    def event_started(self, onset: float) -> None:
        """Forget what led up to an event (its onset and `EVENT_MARGIN_S` before)."""
        if self.running:
            return
        keep = next(
            (i for i, t in enumerate(self._times) if t >= onset - EVENT_MARGIN_S), len(self._times)
        )
        del self._times[keep:]
        del self._values[keep:]

    def start_when_ready(self) -> bool:
        """Start the calibration once `learning_s` of footage is held; True when started."""
        if self.running or self.seconds < self.learning_s:
            return False
        times = np.array(self._times)
        values = np.array(self._values)
        channels = {
            name: values[:, i]
            for i, name in enumerate(self.classes)
            if np.isfinite(values[:, i]).sum() >= 2
        }
        if not channels:
            return False
        self._thread = threading.Thread(
            target=self._calibrate,
            args=(channels, times),
            name=f"learn-{self.camera}",
            daemon=True,
        )
        self._thread.start()
        return True

    def _calibrate(self, channels: dict[str, np.ndarray], times: np.ndarray) -> None:
        try:
            # Each class keeps its share of the budget, whether or not all were scored.
            budget = self._budget * len(channels) / len(self.classes)
            self._result = calibrate(channels, times, self._params, budget)
        except Exception:  # the camera goes on learning-free on its prior; never fatal
            log.exception("camera %s: calibrating from what it learned failed", self.camera)
            self.failed = True

    def result(self) -> dict[str, ClassNormal] | None:
        """The calibration, once its thread has finished (None before, or if it failed)."""
        if self._thread is None or self._thread.is_alive():
            return None
        return self._result

    def join(self, timeout_s: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)

    def progress(self) -> dict[str, Any]:
        return {
            "learned_s": round(min(self.seconds, self.learning_s), 1),
            "learning_s": self.learning_s,
            "classes": list(self.classes),
        }
