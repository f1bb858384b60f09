"""A broker link to a private nats-server, for the hand-off tests that need only that."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hazardwatch.handoff.link import BrokerLink
from tests.conftest import NatsServer


@pytest.fixture
def link(nats_server: NatsServer) -> Iterator[BrokerLink]:
    link = BrokerLink(nats_server.url, "test")
    link.start()
    try:
        yield link
    finally:
        link.stop()
