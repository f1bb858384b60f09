"""Benchmark: what one hop through a JetStream stream costs, by message size.

A private `nats-server -js` and one nats-py client that publishes batches of messages
(each awaiting its PubAck, with a message id as the scores carry) into a file-stored
work-queue stream, fetches them back through a durable pull consumer and acks them: the
hop every frame makes twice (frames, then scores). Reports CPU per message of the server
and of the client, so the broker's share of `scale_out.py`'s overhead can be told from
the bytes it moves.

    python bench/broker_hop.py [--sizes 1000,20000,90000] [--batches 1,8] [--gogc 100,400]
        [--json]

Each size and batch is measured with the server at each GOGC: Go's collector is a large
part of the server's CPU per message at its default (100).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig

from procs import cpu_flags, cpu_seconds, free_port, nats_server, wait_ready

MESSAGES = 1600


async def hop(url: str, size: int, batch: int, storage: StorageType) -> float:
    """Publish, fetch and ack MESSAGES messages of `size` bytes; returns client CPU s."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(
            name="HOP", subjects=["hop.>"], retention=RetentionPolicy.WORK_QUEUE, storage=storage
        )
    )
    config = ConsumerConfig(durable_name="hop", ack_policy=AckPolicy.EXPLICIT)
    sub = await js.pull_subscribe("hop.>", durable="hop", stream="HOP", config=config)
    data = os.urandom(size)
    started = time.process_time()
    for first in range(0, MESSAGES, batch):
        await asyncio.gather(
            *(
                js.publish(f"hop.cam{i % 8}", data, headers={"Nats-Msg-Id": f"m{i}"})
                for i in range(first, first + batch)
            )
        )
        for msg in await sub.fetch(batch, timeout=2):
            await msg.ack()
    await nc.flush()
    used = time.process_time() - started
    await nc.close()
    return used


def measure(size: int, batch: int, storage: StorageType, gogc: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="hw-hop-") as tmp:
        port, http = free_port(), free_port()
        server = nats_server(Path(tmp), port, http, gogc)
        try:
            wait_ready(http, "/varz", timeout=10)
            before = cpu_seconds(server.pid)
            client = asyncio.run(hop(f"nats://127.0.0.1:{port}", size, batch, storage))
            used = cpu_seconds(server.pid) - before
        finally:
            server.terminate()
            server.wait(10)
    return {"server_ms": 1000 * used / MESSAGES, "client_ms": 1000 * client / MESSAGES}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,20000,90000", help="message bytes")
    parser.add_argument("--batches", default="1,8", help="messages per publish/fetch round")
    parser.add_argument("--memory", action="store_true", help="memory storage, not file")
    parser.add_argument(
        "--gogc", default="100,400",
        help="the server's GOGC values to compare (Go's default 100; docker-compose.yml's 400)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    storage = StorageType.MEMORY if args.memory else StorageType.FILE
    rows: list[dict[str, Any]] = []
    for size in (int(s) for s in args.sizes.split(",")):
        for batch in (int(b) for b in args.batches.split(",")):
            for gogc in (int(g) for g in args.gogc.split(",")):
                row = {"bytes": size, "batch": batch, "gogc": gogc,
                       **measure(size, batch, storage, gogc)}  # fmt: skip
                rows.append(row)
                if not args.json:
                    print(
                        f"{size:>7} B, batches of {batch}, GOGC={gogc}: nats-server "
                        f"{row['server_ms']:.3f} ms, client {row['client_ms']:.3f} ms of CPU "
                        f"per message ({storage.value})",
                        flush=True,
                    )
    if args.json:
        print(json.dumps({"storage": storage.value, "cpu_flags": cpu_flags(), "rows": rows}))
    else:
        print(f"CPU flags: {cpu_flags()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
