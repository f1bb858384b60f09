"""Search queries embedded over the broker. The events service of the distributed roles
has no model of its own: a search in words, or by an uploaded image, is a NATS request
(`hazardwatch.embed.text` / `.image`) that one worker answers (a queue group) with the
model it scores with. Find-similar by an event or a keyframe needs no model at all.

A reply is one JSON line (`model`: the worker's `scoring.model`; or `error`) followed by
the float16 vector. The events service refuses a vector of another model than its
keyframes' and says which two disagree.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from hazardwatch.errors import EmbedderUnavailableError
from hazardwatch.handoff.link import BrokerLink
from hazardwatch.images import ImageError, check_image, decode_jpeg
from hazardwatch.records import Image

if TYPE_CHECKING:  # a worker node hands its worker in; handoff never imports scoring
    from hazardwatch.scoring.worker import ScoringWorker

log = logging.getLogger(__name__)
SUBJECT = "hazardwatch.embed"
QUEUE = "hazardwatch-embedders"
TIMEOUT_S = 5.0
MAX_TEXT_BYTES = 4096
F32 = npt.NDArray[np.float32]


class EmbeddingResponder:
    """On a worker node: answers embedding requests with its model (start, stop)."""

    def __init__(self, link: BrokerLink, worker: ScoringWorker, model: str) -> None:
        """`model`: the configured `scoring.model`, as the events service names it."""
        self.link = link
        self.worker = worker
        self.model = model
        self.answered = 0
        self._subscription: Any = None

    def start(self) -> None:
        self._subscription = self.link.subscribe(f"{SUBJECT}.*", self._answer, QUEUE)

    def stop(self, timeout: float = 5.0) -> bool:
        self.link.unsubscribe(self._subscription, "embedding responder", timeout)
        self._subscription = None
        return True

    async def _answer(self, msg: Any) -> None:
        kind = msg.subject.rsplit(".", 1)[-1]
        loop = asyncio.get_running_loop()
        try:
            vector = await loop.run_in_executor(None, self._embed, kind, bytes(msg.data))
            head, body = {"model": self.model, "dim": int(vector.shape[0])}, vector.tobytes()
        except (ValueError, UnicodeDecodeError) as exc:  # ImageError included
            head, body = {"error": str(exc)}, b""
        except Exception as exc:
            log.exception("embedding a %s query failed", kind)
            head, body = {"error": f"{type(exc).__name__}: {exc}"}, b""
        self.answered += 1
        await msg.respond(json.dumps(head).encode() + b"\n" + body)

    def _embed(self, kind: str, data: bytes) -> npt.NDArray[np.float16]:
        if kind == "text":
            if len(data) > MAX_TEXT_BYTES:
                raise ValueError(f"the text is over {MAX_TEXT_BYTES} bytes")
            vector = self.worker.embed_text([data.decode("utf-8")])[0]
        elif kind == "image":
            vector = self.worker.embed_images([decode_jpeg(check_image(data))])[0]
        else:
            raise ValueError(f"no such query kind {kind!r}: text or image")
        return np.asarray(vector, np.float16)


class BrokerEmbedder:
    """On the events node: a `QueryEmbedder` that asks the workers."""

    def __init__(self, link: BrokerLink, model_name: str, timeout_s: float = TIMEOUT_S) -> None:
        self.link = link
        self._model = model_name
        self.timeout_s = timeout_s

    @property
    def model_name(self) -> str:
        return self._model

    def text(self, text: str) -> F32:
        return self._ask("text", text.encode("utf-8"))

    def image(self, image: Image) -> F32:
        import cv2

        ok, data = cv2.imencode(".png", image)
        if not ok:
            raise ImageError("the image could not be encoded to send it to a worker")
        return self._ask("image", data.tobytes())

    def _ask(self, kind: str, data: bytes) -> F32:
        request = self.link.nc.request(f"{SUBJECT}.{kind}", data, timeout=self.timeout_s)
        try:
            reply = self.link.call(request, self.timeout_s + 1)
        except (NoRespondersError, NatsTimeout, TimeoutError) as exc:
            raise EmbedderUnavailableError(
                f"no worker answered to embed the query ({type(exc).__name__}): the words "
                "are embedded by a worker node's model; is one running?"
            ) from None
        head_line, _, body = bytes(reply.data).partition(b"\n")
        head = json.loads(head_line)
        if "error" in head:
            raise ValueError(head["error"])
        if head.get("model") != self._model:
            raise EmbedderUnavailableError(
                f"the workers score with {head.get('model')!r} and the keyframes here are "
                f"of {self._model!r}: configure the same scoring.model on both"
            )
        return np.frombuffer(body, np.float16).astype(np.float32)
