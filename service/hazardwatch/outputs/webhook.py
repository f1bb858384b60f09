"""Webhook alerts: signed JSON POSTs, delivered in order by a thread of their own.

Each request carries `X-Hazardwatch-Timestamp` and `X-Hazardwatch-Signature:
sha256=<hex>`, the HMAC-SHA256 of "<timestamp>.<body>" under the shared secret
(`verify_signature` is what a receiver runs), and `X-Hazardwatch-Delivery`, the same on
every retry. Connection errors, timeouts, 429 and 5xx are retried with exponential
backoff; the queue is bounded and drops its oldest alert (counted) rather than grow.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections import deque
from urllib.parse import urlsplit

import httpx

from hazardwatch.metrics import Metrics
from hazardwatch.outputs.alerts import Alert
from hazardwatch.redact import redact_hook_url, redact_text
from hazardwatch.settings import is_loopback

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Hazardwatch-Signature"
TIMESTAMP_HEADER = "X-Hazardwatch-Timestamp"
DELIVERY_HEADER = "X-Hazardwatch-Delivery"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str,
    timestamp: str | None,
    body: bytes,
    signature: str | None,
    *,
    tolerance_s: float = 300.0,
    now: float | None = None,
    seen: ReplayCache | None = None,
) -> bool:
    """True when `signature` is ours for this body and the timestamp is fresh; False —
    never an exception — for a missing header, a non-ASCII or malformed value, a stale
    timestamp or, given the receiver's `seen` cache, a delivery replayed within the
    window."""
    if not timestamp or not signature or not (timestamp.isascii() and signature.isascii()):
        return False
    try:
        sent_at = float(timestamp)
        age = abs((time.time() if now is None else now) - sent_at)
    except (ValueError, OverflowError):
        return False
    if not age <= tolerance_s:  # also False for nan
        return False
    if not hmac.compare_digest(sign(secret, timestamp, body), signature):
        return False
    return seen is None or seen.first(signature, sent_at + tolerance_s, now)


class ReplayCache:
    """Signatures a receiver has accepted, until their timestamps leave the tolerance
    window: the same signed request sent again within it is refused. Bounded."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def first(self, signature: str, valid_until: float, now: float | None = None) -> bool:
        """True the first time `signature` is seen (and remembers it)."""
        current = time.time() if now is None else now
        with self._lock:
            if len(self._until) >= self.max_entries:
                self._until = {s: t for s, t in self._until.items() if t >= current}
                while len(self._until) >= self.max_entries:  # all still valid: oldest out
                    del self._until[next(iter(self._until))]
            if signature in self._until and self._until[signature] >= current:
                return False
            self._until[signature] = valid_until
            return True


class WebhookSender:
    name = "webhook"

    def __init__(
        self,
        url: str,
        secret: str | None = None,
        *,
        timeout_s: float = 5.0,
        retries: int = 5,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        max_queued: int = 10_000,
        metrics: Metrics | None = None,
    ) -> None:
        self.url = url
        self.secret = secret
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.metrics = metrics
        self._pending: deque[Alert] = deque(maxlen=max_queued)
        self._cond = threading.Condition()
        self._closing = False
        self._stop_now = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook-sender", daemon=True)
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    def start(self) -> None:
        for weakness in self.weaknesses():
            log.warning("webhook %s: %s", redact_hook_url(self.url), weakness)
        self._thread.start()

    def weaknesses(self) -> list[str]:
        """What a receiver or the network could abuse in this configuration (warned at
        start): alerts anyone can forge without a secret, and alerts, links and signatures
        readable on the way over plain HTTP to another host."""
        out = []
        if not self.secret:
            out.append(
                "no alerts.webhook.secret: the receiver cannot tell our alerts from forged "
                "ones; set a secret and verify X-Hazardwatch-Signature"
            )
        parts = urlsplit(self.url)
        if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
            out.append(
                "plain http:// to another host: alerts and their media links cross the "
                "network readable by anyone on it; use https://"
            )
        return out

    def send(self, alert: Alert) -> None:
        with self._cond:
            if len(self._pending) == self._pending.maxlen:
                self.dropped += 1
                self._count("dropped")
            self._pending.append(alert)
            self._cond.notify()

    @property
    def backlog(self) -> int:
        return len(self._pending)

    def stop(self, timeout: float = 10.0) -> bool:
        """Deliver what is queued within `timeout`, then give up on the rest."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)
        self._stop_now.set()  # abandon retries still sleeping
        self._thread.join(self.timeout_s + 1)
        return not self._thread.is_alive()

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout_s, follow_redirects=False) as client:
            while True:
                with self._cond:
                    while not self._pending and not self._closing:
                        self._cond.wait()
                    if not self._pending:
                        return
                    alert = self._pending.popleft()
                self._deliver(client, alert)

    def deliver_now(self, alert: Alert, timeout_s: float) -> str | None:
        """One signed POST now, no retries (`hazardwatch alert test`): None when the
        receiver took it (2xx), else why not."""
        with httpx.Client(timeout=timeout_s, follow_redirects=False) as client:
            reason, _ = self._post(client, alert, self._body(alert))
        return reason

    @staticmethod
    def _body(alert: Alert) -> bytes:
        return json.dumps(alert.payload(), separators=(",", ":")).encode()

    def _post(self, client: httpx.Client, alert: Alert, body: bytes) -> tuple[str | None, bool]:
        """One attempt: (None, _) when delivered, else (why not, whether to retry)."""
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "hazardwatch",
            DELIVERY_HEADER: alert.delivery_id,
            TIMESTAMP_HEADER: timestamp,
        }
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, timestamp, body)
        try:
            response = client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            detail = redact_text(str(exc)) or "no detail"
            return f"{type(exc).__name__} ({detail})", True
        if response.status_code < 300:
            return None, False
        retryable = response.status_code == 429 or response.status_code >= 500
        return f"HTTP {response.status_code}", retryable

    def _deliver(self, client: httpx.Client, alert: Alert) -> None:
        body = self._body(alert)
        delay = self.backoff_s
        reason: str | None = None
        for attempt in range(self.retries + 1):
            reason, retryable = self._post(client, alert, body)
            if reason is None:
                self.sent += 1
                self._count("sent")
                if self.metrics is not None and alert.latency_from is not None:
                    self.metrics.alert_latency_seconds.labels(self.name).observe(
                        time.time() - alert.latency_from
                    )
                return
            if not retryable or attempt == self.retries:
                break
            log.info(
                "webhook %s: %s; retry %d/%d in %.1f s",
                redact_hook_url(self.url),
                reason,
                attempt + 1,
                self.retries,
                delay,
            )
            if self._stop_now.wait(delay):
                break
            delay = min(delay * 2, self.backoff_max_s)
        self.failed += 1
        self._count("failed")
        log.error(
            "webhook %s: alert %s not delivered (%s)",
            redact_hook_url(self.url),
            alert.delivery_id,
            reason,
        )

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.alerts.labels(self.name, outcome).inc()
