"""What the evaluation and calibration commands print: the per-scene table, the
cross-validation summary, a camera's class bands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hazardwatch.cli.common import fmt

if TYPE_CHECKING:
    from hazardwatch.detect.normal import CameraNormal


def print_eval_table(report: dict[str, object]) -> None:
    scenes = report["scenes"]
    assert isinstance(scenes, list)
    print(
        f"{'scene':<14} {'type':<22} {'F1':>6} {'FPR':>6} {'tIoU':>6} {'hits':>5} {'FA':>4}"
        + f" {'AUC':>6}"
        + ("   baseline F1   FPR" if "baseline" in report else "")
    )
    for entry in scenes:
        m = entry["metrics"]
        line = (
            f"{entry['scene']:<14} {entry['type'][:22]:<22} {fmt(m['f1']):>6} "
            f"{fmt(m['fpr']):>6} {fmt(m['mean_temporal_iou']):>6} "
            f"{m['event_hits']:>2}/{m['events']:<2} {m['false_alarms']:>4} "
            f"{fmt(entry.get('class_auc')):>6}"
        )
        if "baseline" in entry:
            b = entry["baseline"]["metrics"]
            line += f"   {fmt(b['f1']):>11} {fmt(b['fpr']):>6}"
        print(line)
    mean = report["mean"]
    assert isinstance(mean, dict)
    line = (
        f"{'mean':<14} {'':<22} {fmt(mean['f1']):>6} {fmt(mean['fpr']):>6} "
        f"{fmt(mean['mean_temporal_iou']):>6}"
    )
    if "baseline" in report:
        b = report["baseline"]["mean"]  # type: ignore[index]
        line += f"{'':>12}{fmt(b['f1']):>11} {fmt(b['fpr']):>6}"
    print(line)
    sweep = report.get("sweep")
    if isinstance(sweep, dict):
        print("\nthreshold sweep (enter; exit keeps its ratio):  threshold   F1    FPR")
        for row in sweep["rows"]:
            print(f"{'':>48}{row['threshold']:>9.3f} {fmt(row['f1'])} {fmt(row['fpr'])}")
        print(
            f"recommended enter threshold: {sweep['recommended_threshold']:g} "
            f"({sweep['criterion']}); per type: {sweep['recommended_by_type']}"
        )


def print_cv(cv: dict[str, Any]) -> None:
    print(f"\ncross-validation ({cv['method']}), held-out figures:")
    print(f"{'':<26} {'F1':>6} {'FPR':>6} {'recall':>7} {'FA':>4} {'FA/h':>6} {'onset s':>8}")
    for key, label in (
        ("selected", "settings chosen per fold"),
        ("defaults", "shipped defaults"),
        ("legacy", "offset rule (before)"),
        ("source_method", "source method"),
    ):
        if key not in cv:
            continue
        mean, tot = cv[key]["mean"], cv[key]["totals"]
        print(
            f"{label:<26} {fmt(mean['f1']):>6} {fmt(mean['fpr']):>6} "
            f"{tot['event_hits']:>3}/{tot['events']:<3} {tot['false_alarms']:>4} "
            f"{fmt(tot['false_alarms_per_hour'], 1):>6} "
            f"{fmt(tot['onset_latency_s']['median']):>8}"
        )


def print_bands(state: CameraNormal) -> None:
    from hazardwatch.detect.normal import evidence_noise

    for name, band in state.classes.items():
        print(
            f"  {name:<24} {band.low:.3f} .. {band.high:.3f} (median {band.level:.3f}), "
            f"noise {evidence_noise(band):.3f}, threshold {band.threshold or 0.0:.1f}, "
            f"burst {band.burst or 0.0:.1f}"
        )
