"""Checking the outputs before an incident does: `alert test` (a marked alert through
every channel) and `weather` (what an event of a camera would be told)."""

from __future__ import annotations

import argparse
import sys

from hazardwatch.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    Subcommands,
    add_command,
    camera_option,
    configured_camera,
    settings_from,
)


def register(sub: Subcommands) -> None:
    alert = sub.add_parser("alert", help="alert channels")
    alert_sub = alert.add_subparsers(dest="alert_command", metavar="ACTION", required=True)
    alert_test = add_command(
        alert_sub,
        "test",
        cmd_alert_test,
        "send a clearly marked test alert through every configured channel now",
        description="Sends one alert of type 'test' (class hazardwatch_test_alert, severity "
        "info) through each configured channel, without retries, and prints per channel "
        "whether it was delivered or why not. Exit 0 when every channel took it.",
    )
    camera_option(alert_test, "camera named in the test alert")
    alert_test.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="seconds per channel (10)"
    )
    weather = add_command(
        sub,
        "weather",
        cmd_weather,
        "print the weather an event of a camera would get now (checks location: and weather:)",
    )
    camera_option(weather, "a configured camera", required=True)


def cmd_alert_test(args: argparse.Namespace) -> int:
    """Send a marked test alert through every configured channel; say per channel how it went."""
    from hazardwatch.components import send_test_alerts

    settings = settings_from(args)
    if args.camera and settings.cameras:
        camera = configured_camera(settings, args.camera).name
    else:
        camera = args.camera or (settings.cameras[0].name if settings.cameras else "alert-test")
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


def cmd_weather(args: argparse.Namespace) -> int:
    """Print the weather that an event of this camera would get now; exit 1 with the reason
    when it would get none."""
    from hazardwatch.outputs.weather import WeatherClient, WeatherUnavailable

    settings = settings_from(args)
    camera = configured_camera(settings, args.camera)
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
