"""What decides each class of a camera now (GET /api/v1/cameras/{name}/normal): the rule,
the calibrated band, noise, threshold and burst limit, whether the class is still being
learned, and the detector's statistic."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from hazardwatch.detect.detector import DetectorParams, TemporalDetector, rule_of
from hazardwatch.detect.normal import CameraNormal, evidence_noise


def explain_camera(
    normal: CameraNormal | None,
    detector: TemporalDetector | None,
    learning: Collection[str],
    params: DetectorParams,
) -> dict[str, Any]:
    """`learning`: the classes the camera is learning (a class by example with no prior is
    learned before anything decides it)."""
    normal = normal or CameraNormal()
    names = set(normal.classes) | set(learning)
    if detector is not None:
        names |= set(detector.channels or ())
    classes = {}
    for name in sorted(names):
        # The detector's view: a class still learning has the bank's prior.
        band = (detector.normal if detector is not None else normal).band(name)
        p = detector.params_for(name) if detector is not None else params
        rule = rule_of(p, band)
        evidence = band is not None and rule == "evidence"
        classes[name] = {
            "rule": rule,
            "band": (
                {"low": band.low, "level": band.level, "high": band.high}
                if band is not None
                else None
            ),
            "noise": evidence_noise(band) if evidence and band is not None else None,
            "threshold": band.threshold if evidence and band is not None else p.enter_threshold,
            "burst": band.burst if evidence and band is not None else None,
            "now": detector.explain(name) if detector is not None else None,
            "learning": name in learning,
        }
    return {
        **normal.summary(),
        "false_alarms_per_day": params.false_alarms_per_day,
        "classes": classes,
    }
