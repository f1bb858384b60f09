"""Where the live prompt bank comes from, asked by the scoring worker every couple of
seconds (a new version is picked up without a restart):

- `FileBank`: the bank file (`prompts.path`, or the shipped one), re-read when it changes;
- `DatabaseBank`: the newest version an admin made through `/api/v1/classes`, which wins
  over the file once there is one (the file is then only the first version's seed);
- on a worker node, `BrokerBank`: what the events service publishes (`BankPublisher`).

Workers have no database: the events service puts the bank an admin edited into the
memory key-value bucket `HAZARDWATCH_BANK` (at once on a change, and again every
`PUBLISH_INTERVAL_S`, so a restarted nats-server has it back), and each worker reads it
when it checks its bank. With nothing published (the bank was never edited) a worker
scores with its bank file. Scores carry the version they were computed with; the events
service reads each from the database (`DatabaseBank.get`).

A source raises `ConfigError` for a bank it cannot read; the worker keeps the one it has.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from typing import Protocol

from nats.js.errors import KeyNotFoundError
from sqlalchemy.exc import SQLAlchemyError

from hazardwatch.errors import ConfigError
from hazardwatch.handoff.link import BrokerLink
from hazardwatch.handoff.status import KvBucket
from hazardwatch.lifecycle import Periodic
from hazardwatch.scoring.bank import PromptBank
from hazardwatch.storage.banks import BankTable

log = logging.getLogger(__name__)


class BankSource(Protocol):
    def current(self) -> PromptBank:
        """The live bank (cached: cheap to ask)."""
        ...


class FileBank:
    """The bank file, read again when its modification time changes (`reload`)."""

    def __init__(self, path: Path, reload: bool = True) -> None:
        self.path = path
        self.reload = reload
        self._mtime = _mtime(path)
        self._bank = PromptBank.from_file(path)
        self._lock = threading.Lock()

    def current(self) -> PromptBank:
        if not self.reload:
            return self._bank
        with self._lock:
            mtime = _mtime(self.path)
            if mtime != self._mtime:
                self._mtime = mtime
                self._bank = PromptBank.from_file(self.path)  # ConfigError: the caller keeps
            return self._bank


class DatabaseBank:
    """The newest version stored through the API, else the file."""

    def __init__(self, table: BankTable, file: FileBank) -> None:
        self.table = table
        self.file = file
        self._bank: PromptBank | None = None
        self._lock = threading.Lock()

    @property
    def source(self) -> str:
        """Where the live bank comes from: database or file."""
        return "database" if self.table.latest_version() is not None else "file"

    def current(self) -> PromptBank:
        version = self.table.latest_version()
        if version is None:
            return self.file.current()
        with self._lock:
            if self._bank is None or self._bank.version != version:
                stored = self.table.get(version)
                if stored is None:  # removed meanwhile: the file, as if never edited
                    return self.file.current()
                self._bank = from_stored(stored.text, version)
            return self._bank

    def get(self, version: str) -> PromptBank | None:
        """An earlier stored version (the events service reads scores pinned to it); None
        when it is not stored, or cannot be read now (the database away: asked again)."""
        try:
            stored = self.table.get(version)
            return from_stored(stored.text, version) if stored is not None else None
        except (SQLAlchemyError, ConfigError) as exc:
            log.warning("prompt bank version %s not read from the database: %s", version, exc)
            return None


def from_stored(text: str, version: str) -> PromptBank:
    bank = PromptBank.from_text(text, f"database version {version}")
    if bank.version != version:
        raise ConfigError(f"stored prompt bank {version} does not hash to its version")
    return bank


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


# ------------------------------------------------------------------ the broker

BANK_BUCKET = "HAZARDWATCH_BANK"
KEY = "current"
PUBLISH_INTERVAL_S = 10.0
READ_TIMEOUT_S = 2.0


class BankPublisher(Periodic):
    """On the events node: the database's live bank into the bucket (none: the key goes)."""

    def __init__(self, link: BrokerLink, banks: DatabaseBank) -> None:
        super().__init__(PUBLISH_INTERVAL_S, "bank-publisher")
        self.link = link
        self.banks = banks
        self._bucket = KvBucket(link, BANK_BUCKET, ttl_s=0)

    def tick(self) -> None:
        try:
            self.publish()
        except Exception as exc:  # the broker is away: the next round tries again
            self._bucket.forget()
            log.debug("prompt bank not published: %s", exc)

    def publish(self) -> None:
        """Now (an admin just changed the bank), and every interval."""
        stored = self.banks.table.latest()
        text = stored.text.encode() if stored is not None else None

        async def put() -> None:
            kv = await self._bucket.get()
            if text is not None:
                await kv.put(KEY, text)
            else:
                with contextlib.suppress(KeyNotFoundError):
                    await kv.delete(KEY)

        self.link.call(put(), READ_TIMEOUT_S)


class BrokerBank:
    """On a worker node: the bank the events service published, else the bank file."""

    def __init__(self, link: BrokerLink, file: FileBank) -> None:
        self.link = link
        self.file = file
        self._bucket = KvBucket(link, BANK_BUCKET, ttl_s=0)
        self._bank: PromptBank | None = None
        self._text = b""  # what `_bank` was parsed from
        self._lock = threading.Lock()

    def current(self) -> PromptBank:
        async def get() -> bytes | None:
            kv = await self._bucket.get()
            try:
                entry = await kv.get(KEY)
            except KeyNotFoundError:
                return None
            return entry.value

        try:
            text = self.link.call(get(), READ_TIMEOUT_S)
        except Exception as exc:  # the broker is away: keep scoring with what we have
            self._bucket.forget()
            log.debug("published prompt bank not read: %s", exc)
            with self._lock:
                return self._bank if self._bank is not None else self.file.current()
        if text is None:
            with self._lock:
                self._bank = None
            return self.file.current()
        with self._lock:
            if self._bank is None or text != self._text:  # parsed once per version
                self._bank = PromptBank.from_text(text.decode(), "the events service")
                self._text = text
            return self._bank
