"""What the API reads: the parts of a running service, set as they come up, so the same
app serves a half-started service (and says so in /readyz)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy.typing as npt

from hazardwatch.capture.fleet import NoCameras
from hazardwatch.metrics import Metrics
from hazardwatch.outputs.media_links import MediaSigner
from hazardwatch.outputs.writer import EventWriter
from hazardwatch.scoring.bank_source import DatabaseBank
from hazardwatch.scoring.worker import ScoringWorker
from hazardwatch.search.embedder import QueryEmbedder
from hazardwatch.search.service import KeyframeSearch
from hazardwatch.status import LocalStatus, RoleStatus, StatusSource
from hazardwatch.storage.repository import Repository

RETRY_AFTER_S = "5"  # seconds, on every 503


@dataclass
class ApiState:
    """What the API reads; the service sets the parts as they come up."""

    repository: Repository
    media_dir: Path
    metrics: Metrics
    # Every camera's status: this process's readers, or what capture nodes report.
    status: StatusSource = field(default_factory=lambda: LocalStatus(NoCameras()))
    # The events role: cameras and scoring run on other nodes, not in this process; what
    # they report comes through the status bucket.
    roles: RoleStatus | None = None
    worker: ScoringWorker | None = None
    writer: EventWriter | None = None
    # Teaches a camera a normal sight (false-alarm feedback); returns its reference count.
    learn_normal: Callable[[str, npt.NDArray[Any]], int] | None = None
    # The events role with partitions: a camera's partition and the instance holding it.
    owner_of: Callable[[str], dict[str, Any]] | None = None
    # Signs media links when a token is set (alerts and the events list carry them).
    signer: MediaSigner = field(default_factory=lambda: MediaSigner(None))
    # A camera's calibration (calibrated, when, on how many seconds, references).
    calibration: Callable[[str], dict[str, Any]] | None = None
    # What decides each class of a camera now (detect/stage.py: DetectorStage.explain).
    explain: Callable[[str], dict[str, Any] | None] | None = None
    # Seconds until an event's clip should be stored; None when none is coming.
    clip_pending: Callable[[str], float | None] = lambda uuid: None
    # A camera's latest frame as JPEG (the camera tiles); None when there is none.
    latest_frame: Callable[[str], bytes | None] = lambda camera: None
    # Search over stored keyframes (None: search.enabled is off), and what embeds a
    # query (None until a model can: it is loading, or no worker is reachable).
    search: KeyframeSearch | None = None
    embedder: QueryEmbedder | None = None
    # The live prompt bank and its versions edited through /api/v1/classes (None: the
    # service does not serve class editing), and who to tell of a new version (the
    # events role publishes it to the workers).
    banks: DatabaseBank | None = None
    bank_changed: Callable[[], None] = lambda: None

    @property
    def scoring_elsewhere(self) -> bool:
        return self.roles is not None
