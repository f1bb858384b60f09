"""One status vocabulary for the API, readiness and the metrics: the cameras as typed
`CameraStatus` records, read through one interface whether the readers run in this
process (`LocalStatus`) or on capture nodes that publish them (`handoff.status.
StatusBoard`, which adds the roles' own reports)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from hazardwatch.capture.fleet import Cameras
from hazardwatch.records import CameraState, CameraStatus, NodeStatus
from hazardwatch.redact import redact_text


class StatusSource(Protocol):
    """Every camera known: running, ended, or configured with a source that does not
    parse (invalid)."""

    def cameras(self) -> list[CameraStatus]: ...


class RoleStatus(StatusSource, Protocol):
    """The events role's view of the other roles, from the status bucket."""

    @property
    def current(self) -> bool: ...

    def workers(self) -> list[NodeStatus]: ...

    def capture_nodes(self) -> list[NodeStatus]: ...


class LocalStatus:
    """The cameras of this process: its readers, and the cameras that never ran."""

    def __init__(self, cameras: Cameras) -> None:
        self._cameras = cameras

    def cameras(self) -> list[CameraStatus]:
        fleet = self._cameras
        invalid = [
            CameraStatus(name, None, CameraState.INVALID, last_error=redact_text(error))
            for name, error in fleet.invalid.items()
        ]
        return [r.status() for r in fleet.readers] + invalid


def camera_problems(statuses: Iterable[CameraStatus]) -> list[str]:
    """Readiness reasons for the cameras that do not deliver."""
    return [problem for status in statuses if (problem := status.problem()) is not None]
