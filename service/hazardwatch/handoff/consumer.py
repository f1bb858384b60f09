"""A durable JetStream pull consumer and its deliveries: the same fetch → ack · nak ·
term protocol as `LocalQueue`. A message that does not decode is counted, logged once
and terminated, so it never blocks the consumer."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig
from nats.js.errors import NotFoundError

from hazardwatch.handoff.codec import CodecError
from hazardwatch.handoff.link import BrokerLink
from hazardwatch.handoff.queue import Delivery

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(eq=False)
class JetStreamDelivery(Generic[T]):
    item: T
    attempt: int
    msg: Msg = field(repr=False)
    link: BrokerLink = field(repr=False)
    settled: str | None = None

    def ack(self) -> None:
        self._settle("ack", self.msg.ack())

    def nak(self) -> None:
        self._settle("nak", self.msg.nak())

    def term(self) -> None:
        self._settle("term", self.msg.term())

    def in_progress(self) -> None:
        """Extend the ack wait (a long batch)."""
        self.link.call(self.msg.in_progress(), timeout=5)

    def _settle(self, how: str, coro: Coroutine[Any, Any, None]) -> None:
        if self.settled is not None:
            coro.close()
            return
        self.settled = how
        self.link.settle(how, coro)


class PullConsumer(Generic[T]):
    """A durable pull consumer decoding each message with `decode`; a message it cannot
    decode is counted, logged once and terminated, so it never blocks the consumer."""

    def __init__(
        self,
        link: BrokerLink,
        stream: str,
        subject: str,
        config: ConsumerConfig,
        decode: Callable[[bytes], T],
        what: str,
        on_malformed: Callable[[], None] | None = None,
    ) -> None:
        self.link = link
        self.decode = decode
        self.what = what
        self.on_malformed = on_malformed
        self.malformed = 0
        self._warned = False
        assert config.durable_name is not None
        self._sub = link.call(self._subscribe(stream, subject, config), timeout=10)

    async def _subscribe(
        self, stream: str, subject: str, config: ConsumerConfig
    ) -> JetStreamContext.PullSubscription:
        assert self.link.js is not None
        return await self.link.js.pull_subscribe(
            subject, durable=config.durable_name, stream=stream, config=config
        )

    def fetch_deliveries(self, max_items: int, timeout_s: float) -> list[Delivery[T]]:
        try:
            messages = self.link.call(
                self._sub.fetch(batch=max_items, timeout=max(timeout_s, 0.05)),
                timeout=timeout_s + 10,
            )
        except (NatsTimeout, TimeoutError):
            return []
        except (NotFoundError, ConnectionError) as exc:
            log.warning("fetching %s failed (%s); retrying", self.what, exc)
            return []
        out: list[Delivery[T]] = []
        for msg in messages:
            try:
                item = self.decode(msg.data)
            except CodecError as exc:
                self._malformed(msg, str(exc))
                continue
            out.append(JetStreamDelivery(item, msg.metadata.num_delivered, msg, self.link))
        return out

    def _malformed(self, msg: Msg, why: str) -> None:
        self.malformed += 1
        if self.on_malformed is not None:
            self.on_malformed()
        if not self._warned:
            self._warned = True
            log.error(
                "message on %s is not %s (%s); terminated (logged once)",
                msg.subject,
                self.what,
                why,
            )
        self.link.settle("term", msg.term())
