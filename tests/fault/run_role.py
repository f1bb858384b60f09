"""A role as its own process, for kill -9 tests.

python -m tests.fault.run_role worker NATS_URL SECONDS_PER_IMAGE BATCH_SIZE [MAX_FRAME_AGE_S]
python -m tests.fault.run_role events NATS_URL DATABASE_URL DATA_DIR [PARTITIONS]

The worker scores with the fake encoder; the events service is `Service` as
`hazardwatch events` builds it, with its API on a free port. Each prints its summary.
"""

from __future__ import annotations

import sys

from hazardwatch.lifecycle import install_signal_handlers
from hazardwatch.redact import configure_logging
from hazardwatch.roles import EventsNode, WorkerNode
from hazardwatch.settings import load_settings
from tests.conftest import free_port
from tests.fakes import SlowFakeEncoder


def main(argv: list[str]) -> int:
    role, url, *rest = argv
    configure_logging("INFO")
    if role == "worker":
        seconds, batch, *age = rest
        settings = load_settings(
            None,
            broker={"url": url, "ack_wait_s": 1.0},
            scoring={"batch_size": int(batch), "max_frame_age_s": float(age[0] if age else 60)},
        )
        node = WorkerNode(
            settings, encoder_factory=lambda s: SlowFakeEncoder(float(seconds)), api_port=0
        )
        install_signal_handlers(node)
        print(node.run(), flush=True)
        return 0
    assert role == "events", role
    database_url, data_dir, *partitions = rest
    settings = load_settings(
        None,
        broker={"url": url, "reorder_window_s": 0.3, "partitions": int(partitions[0] or 1)}
        if partitions
        else {"url": url, "reorder_window_s": 0.3},
        storage={"database_url": database_url, "data_dir": f"{data_dir}/data"},
        media={"dir": f"{data_dir}/media"},
        detector={"cooldown_s": 2.0},
        api={"port": free_port()},
    )
    service = EventsNode(settings)
    install_signal_handlers(service)
    print(service.run(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
