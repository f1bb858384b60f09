"""`hazardwatch run` with the fake encoder, as its own process (for kill -9 tests).

python -m tests.fault.run_fake DATA_DIR PORT [--loop] [--webhook URL] SOURCE...
"""

from __future__ import annotations

import sys

from hazardwatch.app import Service
from hazardwatch.capture.native_log import NATIVE_STDERR
from hazardwatch.components import cameras_from_sources
from hazardwatch.lifecycle import install_signal_handlers
from hazardwatch.redact import configure_logging
from hazardwatch.settings import load_settings
from tests.fakes import FakeEncoder


def main(argv: list[str]) -> int:
    data_dir, port, *rest = argv
    loop = "--loop" in rest
    webhook = rest[rest.index("--webhook") + 1] if "--webhook" in rest else None
    sources = [a for a in rest if a not in ("--loop", "--webhook", webhook)]
    settings = load_settings(
        None,
        cameras=cameras_from_sources(sources, loop=loop),
        storage={"data_dir": data_dir},
        api={"port": int(port)},
        detector={"cooldown_s": 2.0},
        alerts={"cooldown_s": 0, "webhook": {"url": webhook}},
    )
    configure_logging("INFO")
    service = Service(settings, encoder_factory=lambda s: FakeEncoder())
    install_signal_handlers(service)
    NATIVE_STDERR.start()  # as `hazardwatch run` does
    try:
        service.run()
    finally:
        NATIVE_STDERR.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
