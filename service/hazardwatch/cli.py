"""The `hazardwatch` command: parse arguments, load settings, dispatch to one subcommand."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from hazardwatch import __version__
from hazardwatch.capture.sources import SourceSpec
from hazardwatch.errors import ConfigError, HazardwatchError, SourceError
from hazardwatch.redact import configure_logging, redact_text, redact_url
from hazardwatch.settings import Settings, load_settings

if TYPE_CHECKING:
    from hazardwatch.detect.normal import CameraNormal

HAZARD_SCENES_BANK = Path(
    str(resources.files("hazardwatch") / "config" / "eval" / "hazard-scenes.yaml")
)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2  # bad configuration or arguments


def _settings(args: argparse.Namespace, **overrides: object) -> Settings:
    settings = load_settings(args.config, **overrides)
    configure_logging(args.log_level or settings.log_level, settings.log_format)
    return settings


# ---------------------------------------------------------------------------- commands


def cmd_version(args: argparse.Namespace) -> int:
    print(f"hazardwatch {__version__}")
    return EXIT_OK


def cmd_config_check(args: argparse.Namespace) -> int:
    settings = _settings(args)
    source = args.config or ("hazardwatch.yaml" if Path("hazardwatch.yaml").is_file() else None)
    print(
        f"# effective configuration ({source or 'built-in defaults'} + environment); secrets masked"
    )
    print(yaml.safe_dump(settings.redacted(), sort_keys=False, default_flow_style=None), end="")
    # What only shows once ${ENV} credentials are filled in (a '/' or '@' in a password
    # breaks the URL): `run` would skip such a camera and report it; here it is an error.
    problems = []
    exposure = settings.api.exposure()
    if exposure is not None:
        problems.append(exposure)
    for camera in settings.cameras:
        try:
            SourceSpec.parse(camera.url.get_secret_value(), camera.rtsp_transport)
        except SourceError as exc:
            problems.append(f"cameras[{camera.name}].url: {exc}")
    if problems:
        print("# problems to fix:", *problems, sep="\n#   ", file=sys.stderr)
        return EXIT_USAGE
    print(f"# OK: {len(settings.cameras)} camera(s) configured", file=sys.stderr)
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    from hazardwatch.storage import migrate
    from hazardwatch.storage.engine import check_connection, create_engine

    overrides: dict[str, object] = {}
    if args.database_url:
        overrides["storage"] = {"database_url": args.database_url}
    settings = _settings(args, **overrides)
    url = settings.storage.resolved_url()
    engine = create_engine(url)
    try:
        check_connection(engine)
        if args.downgrade:
            migrate.downgrade(engine, args.downgrade)
        else:
            migrate.upgrade(engine, args.revision)
        current = migrate.current_revision(engine)
        head = migrate.head_revision(engine)
    finally:
        engine.dispose()
    state = "head" if current == head else f"head is {head}"
    print(f"database {redact_url(url)} is at revision {current or 'base'} ({state})")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from hazardwatch.app import Service, install_signal_handlers
    from hazardwatch.capture.native_log import NATIVE_STDERR
    from hazardwatch.components import cameras_from_sources

    overrides: dict[str, object] = {}
    if args.source:
        overrides["cameras"] = cameras_from_sources(args.source, args.loop)
    if args.model:
        overrides["scoring"] = {"model": args.model}
    if args.database_url:
        overrides["storage"] = {"database_url": args.database_url}
    if args.api_port is not None or args.no_api:
        api: dict[str, object] = {"enabled": not args.no_api}
        if args.api_port is not None:
            api["port"] = args.api_port
        overrides["api"] = api
    settings = _settings(args, **overrides)
    # SIGHUP re-reads the same file and environment, with the same command-line overrides.
    service = Service(settings, reload_settings=lambda: load_settings(args.config, **overrides))
    install_signal_handlers(service)
    # FFmpeg's and OpenCV's own messages: into each camera's last_error, not raw into stderr.
    NATIVE_STDERR.start()
    try:
        summary = service.run()
    finally:
        NATIVE_STDERR.stop()
    print(
        f"hazardwatch run: {summary.cameras} camera(s), {summary.frames_read} frames read, "
        f"{summary.frames_scored} scored, {summary.events} event(s), "
        f"{summary.queue_dropped} dropped from the queue, {summary.seconds:.1f} s"
    )
    return EXIT_OK


def cmd_role(args: argparse.Namespace) -> int:
    """`capture`, `worker` or `events`: one role of the distributed pipeline."""
    from hazardwatch.app import Service, install_signal_handlers
    from hazardwatch.capture.native_log import NATIVE_STDERR
    from hazardwatch.roles import CaptureNode, WorkerNode, free_port

    overrides: dict[str, object] = {}
    if args.role == "events" and args.api_port is not None:
        port = args.api_port or free_port("127.0.0.1")  # 0: a free one, logged at start
        overrides["api"] = {"port": port}
    settings = _settings(args, **overrides)
    if settings.broker.url is None:
        raise ConfigError(
            f"`hazardwatch {args.role}` needs NATS JetStream: set broker.url "
            "(nats://host:4222) in the config file or HAZARDWATCH_BROKER__URL"
        )
    node: CaptureNode | WorkerNode | Service
    if args.role == "capture":
        # SIGHUP re-reads the same file and environment: cameras added, removed or changed.
        node = CaptureNode(
            settings,
            api_port=args.api_port,
            reload_settings=lambda: load_settings(args.config, **overrides),
        )
    elif args.role == "worker":
        node = WorkerNode(settings, api_port=args.api_port)
    else:
        node = Service(settings, scores_from_broker=True)
    install_signal_handlers(node)
    NATIVE_STDERR.start()
    try:
        summary = node.run()
    finally:
        NATIVE_STDERR.stop()
    print(f"hazardwatch {args.role}: {summary}")
    return EXIT_OK


def cmd_motion(args: argparse.Namespace) -> int:
    import json

    import cv2

    from hazardwatch.components import gate_params
    from hazardwatch.motion.scan import scan_video

    cv2.setNumThreads(1)  # cameras (here: frames) are the parallelism; OpenCV's pool spins
    settings = _settings(args)
    masks: list[list[tuple[float, float]]] = []
    if args.camera:
        matches = [c for c in settings.cameras if c.name == args.camera]
        if not matches:
            names = ", ".join(c.name for c in settings.cameras) or "none configured"
            raise ConfigError(f"--camera {args.camera!r} is not in the configuration ({names})")
        masks = matches[0].masks
    report = scan_video(args.video, gate_params(settings.motion), masks, args.preview)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report))
    summary = report["summary"]
    share = summary["motion_frames"] / summary["frames"] if summary["frames"] else 0.0
    print(
        f"{args.video}: {summary['frames']} frames, {summary['motion_frames']} with motion "
        f"({share:.0%}), gated at {summary['fps']} frames/s"
    )
    return EXIT_OK


def cmd_eval_scores(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from hazardwatch.detect.detector import DetectorParams
    from hazardwatch.evaluation import scores as ev
    from hazardwatch.scoring.bank import PromptBank

    settings = _settings(args)
    params = DetectorParams.from_settings(settings.detector)
    bank = PromptBank.from_file(args.bank)
    rows = ev.parse_rows(args.rows)
    for directory, flag in ((args.scores, "--scores"), (args.annotations, "--annotations")):
        if not directory.is_dir():
            raise ConfigError(f"{flag} {directory} is not a directory")
    scenes = [ev.load_scene(p, args.annotations, rows) for p in ev.discover(args.scores)]
    normal = _read_state(args.camera_state) if args.camera_state else None
    report, runs = ev.evaluate(
        scenes, bank, params, args.fps, args.logit_scale, args.baseline_threshold, normal
    )
    if args.cv:
        report["cv"] = ev.cross_validate(
            scenes, bank, params, args.fps, args.logit_scale, args.baseline_threshold, ev.TODAY
        )
    if args.sweep:
        thresholds = [round(t, 4) for t in np.arange(0.05, 0.501, 0.025)]
        report["sweep"] = ev.sweep(
            scenes, bank, params, args.fps, args.logit_scale, thresholds, normal
        )
    if args.plots:
        from hazardwatch.evaluation.plots import plot_scene, plot_sweep

        for scene in scenes:
            entry = next(r for r in report["scenes"] if r["scene"] == scene.name)
            m = entry["metrics"]
            plot_scene(
                args.plots / f"{scene.name}.png",
                f"{scene.name} ({scene.kind}) — F1 {m['f1']:.2f}, FPR {_fmt(m['fpr'])}",
                runs[scene.name].signals,
                scene.events,
                runs[scene.name].spans,
                args.fps,
            )
        if args.sweep:
            plot_sweep(
                args.plots / "sweep.png",
                report["sweep"],
                report.get("baseline", {}).get("mean"),
            )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1))
    _print_eval_table(report)
    if args.cv:
        _print_cv(report["cv"])
    return EXIT_OK


def _read_state(path: Path) -> CameraNormal:
    import json

    from hazardwatch.detect.normal import CameraNormal

    try:
        return CameraNormal.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        raise ConfigError(f"--camera-state {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--camera-state {path} is not JSON ({exc.msg})") from None
    except ConfigError as exc:
        raise ConfigError(f"--camera-state {path}: {exc}") from None


def _print_cv(cv: dict[str, Any]) -> None:
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
            f"{label:<26} {_fmt(mean['f1']):>6} {_fmt(mean['fpr']):>6} "
            f"{tot['event_hits']:>3}/{tot['events']:<3} {tot['false_alarms']:>4} "
            f"{_fmt(tot['false_alarms_per_hour'], 1):>6} "
            f"{_fmt(tot['onset_latency_s']['median']):>8}"
        )


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Learn a camera's normal from normal footage: a score matrix (to a file), a video, or
    the camera's stored score history."""
    sources = [args.scores is not None, args.video is not None, args.from_history is not None]
    if sum(sources) != 1:
        raise ConfigError(
            "calibrate needs one of --scores FILE.npy, a VIDEO (with --camera) or "
            "--from-history HOURS (with --camera)"
        )
    if args.scores is not None:
        return _calibrate_scores(args)
    if args.from_history is not None:
        if not args.camera:
            raise ConfigError("calibrate --from-history needs --camera NAME")
        return _calibrate_history(args)
    if not args.camera:
        raise ConfigError("calibrate VIDEO needs --camera NAME (the state is stored for it)")
    return _calibrate_video(args)


def _calibrate_scores(args: argparse.Namespace) -> int:
    import json
    import time

    from hazardwatch.detect.detector import DetectorParams
    from hazardwatch.detect.normal import CameraNormal
    from hazardwatch.evaluation import scores as ev
    from hazardwatch.scoring.bank import PromptBank

    if args.output is None:
        raise ConfigError("calibrate --scores needs --output STATE.json")
    if not args.scores.is_file():
        raise ConfigError(f"--scores {args.scores} does not exist")
    settings = _settings(args)
    bank = PromptBank.from_file(args.bank)
    scene = ev.load_matrix(args.scores, ev.parse_rows(args.rows))
    bands = ev.calibrate_scenes(
        [scene], bank, args.logit_scale, args.fps, DetectorParams.from_settings(settings.detector)
    )
    state = CameraNormal(
        classes=bands,
        source="calibrated",
        calibrated_s=scene.frames / args.fps,
        calibrated_at=time.time(),
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(state.to_json(), indent=1))
    print(f"{args.output}: {len(bands)} class band(s) from {scene.frames} frames")
    _print_bands(state)
    return EXIT_OK


def _print_bands(state: CameraNormal) -> None:
    from hazardwatch.detect.normal import evidence_noise

    for name, band in state.classes.items():
        print(
            f"  {name:<24} {band.low:.3f} .. {band.high:.3f} (median {band.level:.3f}), "
            f"noise {evidence_noise(band):.3f}, threshold {band.threshold or 0.0:.1f}, "
            f"burst {band.burst or 0.0:.1f}"
        )


def _calibrate_history(args: argparse.Namespace) -> int:
    from hazardwatch.app import calibrate_camera_from_history

    settings = _settings(args)
    state = calibrate_camera_from_history(
        settings, args.camera, args.from_history, force=args.force
    )
    print(
        f"camera {args.camera}: {len(state.classes)} class(es) calibrated from "
        f"{state.calibrated_s:.0f} s of stored normal history, "
        f"{len(state.references)} normal reference(s) kept"
    )
    _print_bands(state)
    return EXIT_OK


def _calibrate_video(args: argparse.Namespace) -> int:
    from hazardwatch.app import calibrate_camera

    overrides: dict[str, object] = {"scoring": {"model": args.model}} if args.model else {}
    settings = _settings(args, **overrides)
    if not args.video.is_file():
        raise ConfigError(f"video {args.video} does not exist")
    from hazardwatch.capture.native_log import NATIVE_STDERR

    # OpenCV's own "[ WARN:0@…] global cap.cpp…" for a file that is not a video: into the
    # clear error, not raw onto the terminal.
    NATIVE_STDERR.start()
    try:
        state = calibrate_camera(settings, args.camera, args.video, force=args.force)
    finally:
        NATIVE_STDERR.stop()
    print(
        f"camera {args.camera}: {len(state.classes)} class band(s) from "
        f"{state.calibrated_s:.0f} s of footage, {len(state.references)} normal reference(s) "
        "stored"
    )
    _print_bands(state)
    return EXIT_OK


def cmd_cameras(args: argparse.Namespace) -> int:
    """List the configured cameras (URLs masked); with --probe, open each once."""
    from hazardwatch.capture.probe import probe

    settings = _settings(args)
    if not settings.cameras:
        print("no camera is configured (cameras: in the config file)", file=sys.stderr)
        return EXIT_FAILURE
    failed = 0
    for camera in settings.cameras:
        url = camera.url.get_secret_value()
        state = "enabled" if camera.enabled else "disabled"
        try:
            spec = SourceSpec.parse(url, camera.rtsp_transport)
        except SourceError as exc:
            print(f"{camera.name}  invalid  {redact_url(url)}  {state}")
            if args.probe:
                print(f"  probe: FAILED: {redact_text(str(exc))}")
                failed += 1
            continue
        print(f"{camera.name}  {spec.kind}  {spec.display}  {state}")
        if args.probe:
            result = probe(spec, args.timeout)
            print(f"  probe: {'ok' if result.ok else 'FAILED'}: {result.detail}")
            failed += not result.ok
    return EXIT_FAILURE if failed else EXIT_OK


def cmd_weather(args: argparse.Namespace) -> int:
    """Print the weather that an event of this camera would get now; exit 1 with the reason
    when it would get none."""
    from hazardwatch.outputs.weather import WeatherClient, WeatherUnavailable

    settings = _settings(args)
    names = [c.name for c in settings.cameras]
    camera = next((c for c in settings.cameras if c.name == args.camera), None)
    if camera is None:
        raise ConfigError(
            f"--camera {args.camera!r} is not configured; cameras: {', '.join(names) or 'none'}"
        )
    if camera.location is None:
        print(
            f"camera {camera.name} has no location: add `location: {{lat: …, lon: …}}` to it "
            "in the config file; its events get no weather",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    if not settings.weather.enabled:
        print("weather is off (weather.enabled: false); events get no weather", file=sys.stderr)
        return EXIT_FAILURE
    client = WeatherClient(settings.weather)
    try:
        weather = client.current(camera.location)
    except WeatherUnavailable as exc:
        print(
            f"no weather for camera {camera.name} from {settings.weather.base_url}: {exc}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    finally:
        client.close()
    where = f"{camera.location.lat:g}, {camera.location.lon:g}"
    print(f"camera {camera.name} at {where}: {weather.text} (WMO {weather.code})")
    for label, value, unit in (
        ("temperature", weather.temperature_c, " °C"),
        ("precipitation", weather.precipitation_mm, " mm"),
        ("wind", weather.wind_speed_kmh, " km/h"),
        ("visibility", weather.visibility_m, " m"),
    ):
        print(f"  {label}: {'not given' if value is None else f'{value:g}{unit}'}")
    print(f"  observed at: {weather.observed_at.isoformat().replace('+00:00', 'Z')}")
    return EXIT_OK


def cmd_alert_test(args: argparse.Namespace) -> int:
    """Send a marked test alert through every configured channel; say per channel how it went."""
    from hazardwatch.components import send_test_alerts

    settings = _settings(args)
    names = [c.name for c in settings.cameras]
    camera = args.camera or (names[0] if names else "alert-test")
    if args.camera and names and args.camera not in names:
        raise ConfigError(
            f"--camera {args.camera!r} is not configured; cameras: {', '.join(names)}"
        )
    results = send_test_alerts(settings, camera, args.timeout)
    if not results:
        print(
            "no alert channel is configured: set alerts.webhook.url and/or alerts.mqtt.host",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    for target, reason in results:
        print(f"{target}: " + ("delivered" if reason is None else f"NOT delivered: {reason}"))
    return EXIT_OK if all(reason is None for _, reason in results) else EXIT_FAILURE


def cmd_eval_video(args: argparse.Namespace) -> int:
    import json
    import shutil

    from hazardwatch.components import load_encoder
    from hazardwatch.detect.detector import DetectorParams
    from hazardwatch.evaluation import scores as ev
    from hazardwatch.evaluation import video
    from hazardwatch.scoring.bank import load_bank

    overrides: dict[str, object] = {"scoring": {"model": args.model}} if args.model else {}
    settings = _settings(args, **overrides)
    if not args.video.is_file():
        raise ConfigError(f"video {args.video} does not exist")
    bank = load_bank(settings.prompts.path)
    encoder = load_encoder(settings)
    name = args.video.stem
    matrix = video.score_video(args.video, encoder, bank, settings.scoring.batch_size)
    npy = video.write_matrix(args.output, name, matrix, bank.prompts)
    print(f"wrote {npy} ({matrix.shape[0]} prompts × {matrix.shape[1]} frames) and its prompts")
    if args.annotations is None:
        return EXIT_OK
    annotations = args.output / "annotations"
    annotations.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.annotations, annotations / f"{name}.json")
    scene = ev.load_scene(npy, annotations, None)
    fps = args.fps or video.frame_rate(args.video)
    report, _ = ev.evaluate(
        [scene], bank, DetectorParams.from_settings(settings.detector), fps, encoder.logit_scale
    )
    (args.output / "report.json").write_text(json.dumps(report, indent=1))
    _print_eval_table(report)
    return EXIT_OK


def cmd_eval_images(args: argparse.Namespace) -> int:
    import json

    from hazardwatch.components import load_encoder
    from hazardwatch.evaluation.images import evaluate_images, plot_confusion
    from hazardwatch.scoring.bank import load_bank

    overrides: dict[str, object] = {"scoring": {"model": args.model}} if args.model else {}
    settings = _settings(args, **overrides)
    bank = load_bank(settings.prompts.path)
    encoder = load_encoder(settings)
    report = evaluate_images(
        args.directory,
        encoder,
        bank,
        args.map or [],
        args.top_k,
        args.normal_refs,
        settings.scoring.batch_size,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1))
    if args.plots:
        plot_confusion(args.plots / "confusion.png", report)
    print(
        f"{report['images']} images: accuracy {report['accuracy']:.3f}, "
        f"top-{args.top_k} {report[f'top_{args.top_k}_accuracy']:.3f}, "
        f"ROC-AUC hazard vs normal {_fmt(report['roc_auc_hazard_vs_normal'])}"
    )
    for folder, m in report["per_class"].items():
        print(
            f"  {folder:<20} P {m['precision']:.3f}  R {m['recall']:.3f}  "
            f"F1 {m['f1']:.3f}  n={m['support']}"
        )
    if "few_shot" in report:
        fs = report["few_shot"]
        print(
            f"  few-shot ({fs['references']} normal refs): AUC anomaly "
            f"{_fmt(fs['roc_auc_anomaly'])}, combined {_fmt(fs['roc_auc_combined'])}"
        )
    return EXIT_OK


def cmd_eval_masks(args: argparse.Namespace) -> int:
    """IoU / Dice of hazard masks on a folder in seed 004's layout."""
    import json

    from hazardwatch.evaluation.masks import (
        ColourMap,
        encoder_scorer,
        evaluate_masks,
        progress_bar,
        zero_shot_predictor,
    )

    colours = ColourMap.parse(args.colors)
    if not 2 <= args.grid <= 16:
        raise ConfigError(f"--grid {args.grid}: give 2 to 16 cells per side")
    if not 0.0 <= args.threshold <= 1.0:
        raise ConfigError(f"--threshold {args.threshold:g}: give a value from 0 to 1")
    predict = None
    model = "predictions " + str(args.predictions)
    if args.predictions is None:
        from hazardwatch.components import load_encoder
        from hazardwatch.scoring.bank import load_bank

        overrides: dict[str, object] = {"scoring": {"model": args.model}} if args.model else {}
        settings = _settings(args, **overrides)
        bank = load_bank(args.bank or settings.prompts.path)
        missing = [c for c in colours.classes if c not in bank.class_names]
        if missing:
            raise ConfigError(
                f"class(es) {', '.join(missing)} of --colors are not in the prompt bank "
                f"(it has {', '.join(bank.class_names)}); give a bank that has them with "
                "--bank FILE"
            )
        encoder = load_encoder(settings)
        scorer = encoder_scorer(encoder, bank, settings.scoring.batch_size)
        predict = zero_shot_predictor(scorer, colours, args.threshold, args.grid)
        model = f"{encoder.name} zero-shot, grid {args.grid}, threshold {args.threshold:g}"
    report = evaluate_masks(
        args.images, args.masks, colours, predict=predict, predictions=args.predictions,
        plots=args.plots, progress=progress_bar,
    )  # fmt: skip
    report["predicted_by"] = model
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1))
    for problem in report["problems"]:
        print(f"  skipped {problem['file']}: {problem['error']}", file=sys.stderr)
    print(
        f"{report['pairs_scored']} pair(s) scored, {report['skipped']} skipped "
        f"({model}): mean IoU {_fmt(report['mean_iou'])}, mean Dice "
        f"{_fmt(report['mean_dice'])}, pixel accuracy {_fmt(report['pixel_accuracy'])}"
    )
    for name, m in report["per_class"].items():
        print(f"  {name:<20} IoU {_fmt(m['iou'])}  Dice {_fmt(m['dice'])}")
    print(f"report: {args.output}" + (f", plot: {report['plot']}" if "plot" in report else ""))
    return EXIT_OK if report["pairs_scored"] else EXIT_FAILURE


def _fmt(value: float | None, digits: int = 3) -> str:
    return "  -  " if value is None else f"{value:.{digits}f}"


def _print_eval_table(report: dict[str, object]) -> None:
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
            f"{entry['scene']:<14} {entry['type'][:22]:<22} {_fmt(m['f1']):>6} "
            f"{_fmt(m['fpr']):>6} {_fmt(m['mean_temporal_iou']):>6} "
            f"{m['event_hits']:>2}/{m['events']:<2} {m['false_alarms']:>4} "
            f"{_fmt(entry.get('class_auc')):>6}"
        )
        if "baseline" in entry:
            b = entry["baseline"]["metrics"]
            line += f"   {_fmt(b['f1']):>11} {_fmt(b['fpr']):>6}"
        print(line)
    mean = report["mean"]
    assert isinstance(mean, dict)
    line = (
        f"{'mean':<14} {'':<22} {_fmt(mean['f1']):>6} {_fmt(mean['fpr']):>6} "
        f"{_fmt(mean['mean_temporal_iou']):>6}"
    )
    if "baseline" in report:
        b = report["baseline"]["mean"]  # type: ignore[index]
        line += f"{'':>12}{_fmt(b['f1']):>11} {_fmt(b['fpr']):>6}"
    print(line)
    sweep = report.get("sweep")
    if isinstance(sweep, dict):
        print("\nthreshold sweep (enter; exit keeps its ratio):  threshold   F1    FPR")
        for row in sweep["rows"]:
            print(f"{'':>48}{row['threshold']:>9.3f} {_fmt(row['f1'])} {_fmt(row['fpr'])}")
        print(
            f"recommended enter threshold: {sweep['recommended_threshold']:g} "
            f"({sweep['criterion']}); per type: {sweep['recommended_by_type']}"
        )


# ---------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:  # noqa: PLR0915 - one flat list of options
    parser = argparse.ArgumentParser(
        prog="hazardwatch",
        description="Real-time CCTV hazard monitoring: motion-gated CLIP scoring, "
        "temporal event detection, alerts.",
    )
    parser.add_argument(
        "--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="override log_level"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(
        name: str, handler: Callable[[argparse.Namespace], int], help_: str
    ) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_, description=help_)
        command.set_defaults(handler=handler)
        return command

    def config_option(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--config",
            type=Path,
            metavar="FILE",
            help="YAML settings (default: ./hazardwatch.yaml when present)",
        )

    add("version", cmd_version, "print the version")

    migrate = add("migrate", cmd_migrate, "upgrade the database schema to the latest revision")
    config_option(migrate)
    migrate.add_argument("--database-url", metavar="URL", help="override storage.database_url")
    migrate.add_argument("--revision", default="head", help="target revision (default: head)")
    migrate.add_argument("--downgrade", metavar="REV", help="downgrade to REV instead (e.g. base)")

    run = add("run", cmd_run, "run the monitoring pipeline until the sources end or a signal")
    config_option(run)
    run.add_argument(
        "--source",
        action="append",
        metavar="PATH_OR_URL",
        help="a camera source (repeatable); replaces the configured cameras",
    )
    run.add_argument("--loop", action="store_true", help="loop --source files (demos)")
    run.add_argument("--model", metavar="NAME_OR_PATH", help="override scoring.model")
    run.add_argument("--database-url", metavar="URL", help="override storage.database_url")
    run.add_argument("--api-port", type=int, metavar="PORT", help="override api.port")
    run.add_argument("--no-api", action="store_true", help="run without the HTTP API")

    for role, text in (
        ("capture", "read this node's cameras and publish their gated frames to NATS"),
        ("worker", "score frames from NATS with CLIP and publish the scores"),
        ("events", "detect events from the scores in NATS; store, alert, serve the API"),
    ):
        node = add(role, cmd_role, text + " (needs broker.url)")
        node.set_defaults(role=role)
        config_option(node)
        node.add_argument(
            "--api-port",
            type=int,
            metavar="PORT",
            help="/healthz, /readyz and /metrics (events: the whole API) on this port; "
            "0 picks a free one (logged)",
        )

    motion = add(
        "motion", cmd_motion, "run the motion gate over a video file to tune its thresholds"
    )
    motion.add_argument("video", type=Path, metavar="VIDEO", help="video file to scan")
    config_option(motion)
    motion.add_argument("--camera", metavar="NAME", help="use this configured camera's masks")
    motion.add_argument("--json", type=Path, metavar="OUT", help="write per-frame results here")
    motion.add_argument("--preview", type=Path, metavar="OUT.mp4", help="write an annotated video")

    evaluate = sub.add_parser("eval", help="offline evaluation and calibration")
    eval_sub = evaluate.add_subparsers(dest="eval_command", metavar="KIND", required=True)
    scores = eval_sub.add_parser(
        "scores", help="replay [prompts, frames] score matrices through the live detector"
    )
    scores.set_defaults(handler=cmd_eval_scores)
    config_option(scores)
    scores.add_argument(
        "--scores", type=Path, required=True, metavar="DIR", help="*.npy + *_prompts.json"
    )
    scores.add_argument(
        "--annotations", type=Path, required=True, metavar="DIR", help="NAME.mp4.json files"
    )
    scores.add_argument(
        "--rows",
        metavar="RANGES",
        help="rows to use, e.g. 0-37 (rows past 37 of the shared scenes leak the answer)",
    )
    scores.add_argument(
        "--fps", type=float, default=30.0, help="frame rate of the scored video (default 30)"
    )
    scores.add_argument("--output", type=Path, required=True, metavar="OUT.json")
    scores.add_argument(
        "--plots", type=Path, metavar="DIR", help="write per-scene (and sweep) PNGs here"
    )
    scores.add_argument(
        "--baseline-threshold",
        type=float,
        metavar="T",
        help="also score the source method: any row above T",
    )
    scores.add_argument(
        "--sweep", action="store_true", help="sweep the enter threshold; recommend one"
    )
    scores.add_argument(
        "--bank",
        type=Path,
        default=HAZARD_SCENES_BANK,
        help="prompt bank grouping rows into classes by prompt text "
        "(default: config/eval/hazard-scenes.yaml)",
    )
    scores.add_argument(
        "--logit-scale",
        type=float,
        default=100.0,
        help="CLIP logit scale for class probabilities (default 100)",
    )
    scores.add_argument(
        "--camera-state",
        type=Path,
        metavar="STATE.json",
        help="start every scene's detector from this state (hazardwatch calibrate --scores) "
        "instead of the bank's prior",
    )
    scores.add_argument(
        "--cv",
        action="store_true",
        help="leave-one-scene-out cross-validation of the prior and the detector settings",
    )

    calibrate = add(
        "calibrate",
        cmd_calibrate,
        "learn a camera's normal from normal footage (class bands and normal references)",
    )
    config_option(calibrate)
    calibrate.add_argument("video", type=Path, nargs="?", metavar="VIDEO", help="normal footage")
    calibrate.add_argument("--camera", metavar="NAME", help="store the state for this camera")
    calibrate.add_argument(
        "--force",
        action="store_true",
        help="store the state even when --camera names no configured camera",
    )
    calibrate.add_argument(
        "--from-history",
        type=float,
        metavar="HOURS",
        help="calibrate --camera from its score rows of the last HOURS stored in the "
        "database (event spans left out) instead of a video",
    )
    calibrate.add_argument("--model", metavar="NAME_OR_PATH", help="override scoring.model")
    calibrate.add_argument(
        "--scores", type=Path, metavar="FILE.npy", help="a [prompts, frames] score matrix instead"
    )
    calibrate.add_argument("--rows", metavar="RANGES", help="rows of --scores to use, e.g. 0-37")
    calibrate.add_argument(
        "--output", type=Path, metavar="STATE.json", help="where --scores writes the state"
    )
    calibrate.add_argument("--fps", type=float, default=30.0, help="frame rate of --scores")
    calibrate.add_argument(
        "--bank",
        type=Path,
        default=HAZARD_SCENES_BANK,
        help="bank grouping --scores rows into classes (default: config/eval/hazard-scenes.yaml)",
    )
    calibrate.add_argument("--logit-scale", type=float, default=100.0)

    images_cmd = eval_sub.add_parser(
        "images", help="classify labelled image folders: accuracy, per-class F1, ROC-AUC"
    )
    images_cmd.set_defaults(handler=cmd_eval_images)
    config_option(images_cmd)
    images_cmd.add_argument("directory", type=Path, metavar="DIR", help="one folder per class")
    images_cmd.add_argument(
        "--map",
        action="append",
        metavar="FOLDER=CLASS",
        help="map a folder to a bank class, or to hazard / normal (repeat per folder)",
    )
    images_cmd.add_argument(
        "--normal-refs", type=Path, metavar="DIR", help="few-shot normal images"
    )
    images_cmd.add_argument("--top-k", type=int, default=5)
    images_cmd.add_argument("--model", metavar="NAME_OR_PATH", help="override scoring.model")
    images_cmd.add_argument(
        "--output", type=Path, default=Path("eval-images.json"), metavar="OUT.json"
    )
    images_cmd.add_argument("--plots", type=Path, metavar="DIR", help="write confusion.png here")

    masks_cmd = eval_sub.add_parser(
        "masks",
        help="IoU / Dice of hazard masks on image + mask folders (seed 004's layout)",
        description="Pairs IMAGES/ORI_001.png with MASKS/GT_001.png by the number in the "
        "name; masks paint each class in one RGB colour. Predicts our zero-shot masks over "
        "those classes (or reads another model's from --predictions) and reports per-class "
        "and mean IoU and Dice and the pixel accuracy.",
    )
    masks_cmd.set_defaults(handler=cmd_eval_masks)
    config_option(masks_cmd)
    masks_cmd.add_argument("--images", type=Path, required=True, metavar="DIR")
    masks_cmd.add_argument("--masks", type=Path, required=True, metavar="DIR")
    masks_cmd.add_argument(
        "--colors",
        nargs="+",
        required=True,
        metavar="R,G,B=CLASS",
        help="each class's colour in the masks, e.g. 255,0,0=corrosion 0,255,0=background",
    )
    masks_cmd.add_argument("--model", metavar="NAME_OR_PATH", help="override scoring.model")
    masks_cmd.add_argument(
        "--bank", type=Path, metavar="FILE", help="prompt bank with the classes (default: live)"
    )
    masks_cmd.add_argument(
        "--predictions",
        type=Path,
        metavar="DIR",
        help="score these masks (same colours, numbered like the truth) instead of ours",
    )
    masks_cmd.add_argument(
        "--threshold",
        type=float,
        default=0.0,
        help="a pixel gets no class unless the winner's evidence reaches this (default 0: "
        "every pixel labelled, as a segmenter's argmax)",
    )
    masks_cmd.add_argument(
        "--grid", type=int, default=4, help="crop grid cells per side (default 4)"
    )
    masks_cmd.add_argument(
        "--output",
        type=Path,
        default=Path("eval-masks.json"),
        metavar="OUT.json",
        help="the JSON report (default: eval-masks.json in the current directory)",
    )
    masks_cmd.add_argument(
        "--plots",
        type=Path,
        metavar="DIR",
        help="write masks.png here: a row per pair (image with its file name, ground truth, "
        "prediction) under column titles",
    )

    video_cmd = eval_sub.add_parser(
        "video", help="score every frame of a clip into a score matrix (+ metrics with labels)"
    )
    video_cmd.set_defaults(handler=cmd_eval_video)
    config_option(video_cmd)
    video_cmd.add_argument("video", type=Path, metavar="VIDEO")
    video_cmd.add_argument(
        "--annotations",
        type=Path,
        metavar="JSON",
        help='{"total_frames", "events": [{"start", "end"}]}',
    )
    video_cmd.add_argument("--model", metavar="NAME_OR_PATH", help="override scoring.model")
    video_cmd.add_argument("--fps", type=float, help="frame rate (default: the file's)")
    video_cmd.add_argument(
        "--output",
        type=Path,
        default=Path("eval-video"),
        metavar="DIR",
        help="writes DIR/scores/NAME.npy, NAME_prompts.json (and report.json)",
    )

    cameras = add(
        "cameras",
        cmd_cameras,
        "list the configured cameras with their URLs masked; --probe opens each once",
    )
    config_option(cameras)
    cameras.add_argument(
        "--probe",
        action="store_true",
        help="open each camera once: codec, resolution and fps, or why it failed "
        "(authentication, refused, no answer, unknown path); exit 1 when any failed",
    )
    cameras.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="seconds per camera (10)"
    )

    weather = add(
        "weather",
        cmd_weather,
        "print the weather an event of a camera would get now (checks location: and weather:)",
    )
    config_option(weather)
    weather.add_argument("--camera", required=True, metavar="NAME", help="a configured camera")

    alert = sub.add_parser("alert", help="alert channels")
    alert_sub = alert.add_subparsers(dest="alert_command", metavar="ACTION", required=True)
    alert_test = alert_sub.add_parser(
        "test",
        help="send a clearly marked test alert through every configured channel now",
        description="Sends one alert of type 'test' (class hazardwatch_test_alert, severity "
        "info) through each configured channel, without retries, and prints per channel "
        "whether it was delivered or why not. Exit 0 when every channel took it.",
    )
    alert_test.set_defaults(handler=cmd_alert_test)
    config_option(alert_test)
    alert_test.add_argument("--camera", metavar="NAME", help="camera named in the test alert")
    alert_test.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="seconds per channel (10)"
    )

    config = sub.add_parser("config", help="inspect the configuration")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = config_sub.add_parser(
        "check", help="validate and print the effective configuration (secrets masked)"
    )
    check.set_defaults(handler=cmd_config_check)
    config_option(check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(f"hazardwatch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except HazardwatchError as exc:
        print(f"hazardwatch: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:  # unwritable output paths and the like
        print(f"hazardwatch: {redact_text(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
