"""A worker role with the fake encoder, as its own process (for kill -9 tests).

python -m tests.fault.run_role worker NATS_URL SECONDS_PER_IMAGE BATCH_SIZE
"""

from __future__ import annotations

import sys

from hazardwatch.app import install_signal_handlers
from hazardwatch.redact import configure_logging
from hazardwatch.roles import WorkerNode
from hazardwatch.settings import load_settings
from tests.fakes import SlowFakeEncoder


def main(argv: list[str]) -> int:
    role, url, seconds, batch = argv
    assert role == "worker"
    settings = load_settings(
        None,
        broker={"url": url, "ack_wait_s": 1.0},
        scoring={"batch_size": int(batch), "max_frame_age_s": 60},
    )
    configure_logging("INFO")
    node = WorkerNode(
        settings, encoder_factory=lambda s: SlowFakeEncoder(float(seconds)), api_port=0
    )
    install_signal_handlers(node)
    node.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
