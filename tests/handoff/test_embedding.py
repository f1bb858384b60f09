"""Search queries embedded over the broker: the events service asks, one worker answers
with its model (a real nats-server; the fake encoder is the model)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from hazardwatch.errors import EmbedderUnavailableError
from hazardwatch.handoff.embedding import BrokerEmbedder, EmbeddingResponder
from hazardwatch.handoff.link import BrokerLink
from hazardwatch.handoff.queue import LocalQueue
from hazardwatch.records import GatedFrame
from hazardwatch.scoring.bank import DEFAULT_BANK, load_bank
from hazardwatch.scoring.worker import ScoringWorker
from tests.conftest import NatsServer
from tests.fakes import FakeEncoder


@pytest.fixture
def links(nats_server: NatsServer) -> Iterator[tuple[BrokerLink, BrokerLink]]:
    worker_link, events_link = BrokerLink(nats_server.url, "w"), BrokerLink(nats_server.url, "e")
    worker_link.start()
    events_link.start()
    yield worker_link, events_link
    events_link.stop()
    worker_link.stop()


def worker() -> ScoringWorker:
    queue: LocalQueue[GatedFrame] = LocalQueue(2)
    return ScoringWorker(FakeEncoder(), load_bank(DEFAULT_BANK), queue, lambda _: None)


def test_a_worker_embeds_words_and_images_for_the_events_service(
    links: tuple[BrokerLink, BrokerLink],
) -> None:
    worker_link, events_link = links
    scorer = worker()
    asker = BrokerEmbedder(events_link, "ViT-B/32", timeout_s=2)
    with pytest.raises(EmbedderUnavailableError, match="no worker answered"):
        asker.text("a car crash")  # nobody listens yet
    responder = EmbeddingResponder(worker_link, scorer, "ViT-B/32")
    responder.start()
    try:
        words = asker.text("a car crash")
        assert np.allclose(words, scorer.embed_text(["a car crash"])[0], atol=1e-3)
        red = np.full((120, 160, 3), 128, np.uint8)
        red[20:100, 30:130] = (0, 0, 230)
        assert np.allclose(asker.image(red), scorer.embed_images([red])[0], atol=1e-3)
        with pytest.raises(ValueError, match="over 4096 bytes"):
            asker.text("x" * 5000)
        other = BrokerEmbedder(events_link, "ViT-L/14", timeout_s=2)
        with pytest.raises(EmbedderUnavailableError, match=r"configure the same scoring\.model"):
            other.text("a car crash")
        assert responder.answered == 4
    finally:
        responder.stop()
