"""The prompt bank: hazard and normal classes, each described in words or by example.

- **In words** (`prompts`): a class's score on a frame is its probability in
  softmax(logit_scale × cosine) over the classes in words; live, the class embedding is
  the normalised mean of its prompt embeddings. `class_probabilities` is shared by the
  live worker and the offline evaluation so both feed the detector the same signal.
- **By example** (`examples`): image embeddings of the sight (an event's peak, a keyframe,
  an uploaded picture), all of one `model`. The class's score is its own channel, outside
  the softmax: `example_probability`, (1 + c) / 2 with c the frame's best cosine with an
  example. Its logit is log((1 + c) / (1 − c)) = 2·atanh(c), Fisher's z of the cosine,
  so the detector's evidence (a logit excess over the camera's noise) is measured on a
  variance-stabilised similarity. No cosine is a threshold: like every class, the
  threshold per camera comes from that camera's normal footage and the false-alarm
  budget (detect/thresholds.py); a camera learns a new class online (detect/learning.py).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import yaml

from hazardwatch.errors import ConfigError
from hazardwatch.records import ClassNormal

log = logging.getLogger(__name__)

ClassKind = Literal["hazard", "normal"]
SEVERITIES = ("info", "warning", "critical")
# Shipped with the package (importlib.resources), so a wheel install finds it too.
DEFAULT_BANK = Path(str(resources.files("hazardwatch") / "config" / "prompts.yaml"))
_NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")
_CLASS_KEYS = {
    "kind",
    "severity",
    "prompts",
    "enter_threshold",
    "exit_threshold",
    "description",
    "normal",
    "cameras",
    "examples",
    "model",
}
MAX_EXAMPLES = 64
_EXAMPLE_KEYS = {"source", "embedding"}
_CAMERA = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Example:
    """One example of a class defined by example: where it came from (`event:<uuid>`,
    `keyframe:<id>`, `upload:<sha256 prefix>`) and its unit image embedding as float16
    in base64 (how events store their peak's)."""

    source: str
    embedding: str

    def vector(self) -> npt.NDArray[np.float32]:
        raw = np.frombuffer(base64.b64decode(self.embedding), np.float16).astype(np.float32)
        norm = float(np.linalg.norm(raw))
        return raw / norm if norm > 0 else raw

    @classmethod
    def of(cls, source: str, vector: npt.ArrayLike) -> Example:
        v = np.asarray(vector, np.float32).reshape(-1)
        v = v / max(float(np.linalg.norm(v)), 1e-12)
        return cls(source, base64.b64encode(v.astype(np.float16).tobytes()).decode("ascii"))


@dataclass(frozen=True, slots=True)
class PromptClass:
    name: str
    kind: ClassKind
    severity: str
    prompts: tuple[str, ...]
    enter_threshold: float | None = None
    exit_threshold: float | None = None
    description: str = ""
    # The prior band of this class's probability on normal footage (CameraNormal).
    normal: ClassNormal | None = None
    # The cameras it is watched on; empty: every camera.
    cameras: tuple[str, ...] = ()
    # Defined by example instead of in words: the examples and the model that embedded
    # them (a worker of another model cannot score the class).
    examples: tuple[Example, ...] = ()
    model: str = ""

    @property
    def by_example(self) -> bool:
        return bool(self.examples)

    @property
    def definition(self) -> str:
        """What a camera's calibration of a class by example was learned on (its model
        and examples, hashed): another set of examples is another channel to learn. ""
        for a class in words."""
        if not self.examples:
            return ""
        digest = hashlib.sha256(self.model.encode())
        for e in sorted(self.examples, key=lambda e: e.embedding):
            digest.update(e.embedding.encode())
        return digest.hexdigest()[:12]

    def watched_on(self, camera: str) -> bool:
        return not self.cameras or camera in self.cameras

    def to_mapping(self) -> dict[str, Any]:
        """As the bank file writes it (only what is set)."""
        out: dict[str, Any] = {"kind": self.kind, "severity": self.severity}
        if self.prompts:
            out["prompts"] = list(self.prompts)
        if self.examples:
            out["model"] = self.model
            out["examples"] = [
                {"source": e.source, "embedding": e.embedding} for e in self.examples
            ]
        if self.description:
            out["description"] = self.description
        if self.enter_threshold is not None:
            out["enter_threshold"] = self.enter_threshold
        if self.exit_threshold is not None:
            out["exit_threshold"] = self.exit_threshold
        if self.normal is not None:
            out["normal"] = self.normal.as_dict()
        if self.cameras:
            out["cameras"] = list(self.cameras)
        return out


@dataclass(frozen=True, slots=True)
class PromptBank:
    classes: tuple[PromptClass, ...]
    version: str  # content hash: stored with every event
    source: str = "<memory>"

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def hazard_classes(self) -> list[str]:
        return [c.name for c in self.classes if c.kind == "hazard"]

    @property
    def worded_hazards(self) -> list[str]:
        """The hazard classes in words (a heatmap sums these: softmax shares of one frame)."""
        return [c.name for c in self.classes if c.kind == "hazard" and not c.by_example]

    @property
    def worded(self) -> list[int]:
        """The indices of the classes in words (the softmax is over these)."""
        return [i for i, c in enumerate(self.classes) if not c.by_example]

    @property
    def prompts(self) -> list[str]:
        """Every prompt, class by class, in a fixed order."""
        return [p for c in self.classes for p in c.prompts]

    @property
    def prompt_class_index(self) -> npt.NDArray[np.int64]:
        """For each prompt in `prompts`, the index of its class."""
        return np.array([i for i, c in enumerate(self.classes) for _ in c.prompts], np.int64)

    def to_text(self) -> str:
        """The bank as YAML (what a version edited through the API stores)."""
        data = {"classes": {c.name: c.to_mapping() for c in self.classes}}
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)

    def get(self, name: str) -> PromptClass:
        for c in self.classes:
            if c.name == name:
                return c
        raise KeyError(name)

    @classmethod
    def from_file(cls, path: Path) -> PromptBank:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"prompt bank {path} cannot be read: {exc.strerror}") from None
        return cls.from_text(text, str(path))

    @classmethod
    def from_text(cls, text: str, source: str = "<memory>") -> PromptBank:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"prompt bank {source} is not valid YAML: {exc}") from None
        return cls.from_mapping(data, source, hashlib.sha256(text.encode()).hexdigest()[:12])

    @classmethod
    def from_mapping(cls, data: Any, source: str, version: str) -> PromptBank:
        where = f"prompt bank {source}"
        if not isinstance(data, dict) or not isinstance(data.get("classes"), dict):
            raise ConfigError(f"{where}: expected a mapping with a 'classes:' mapping of names")
        unknown = set(data) - {"classes", "description"}
        if unknown:
            raise ConfigError(
                f"{where}: unknown top-level key(s) {sorted(unknown)}; "
                "allowed: classes, description"
            )
        classes = [_parse_class(where, name, spec) for name, spec in data["classes"].items()]
        owner: dict[str, str] = {}
        for c in classes:
            for prompt in c.prompts:
                if prompt in owner:
                    raise ConfigError(
                        f"{where}: prompt {prompt!r} appears in {owner[prompt]!r} and {c.name!r}"
                    )
                owner[prompt] = c.name
        if not any(c.kind == "hazard" for c in classes):
            raise ConfigError(f"{where}: at least one class must be of kind 'hazard'")
        return cls(tuple(classes), version, source)


def _parse_class(where: str, name: Any, spec: Any) -> PromptClass:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"{where}: class name {name!r} must be 1-64 of lowercase letters, digits and '_'"
        )
    here = f"{where}: class {name!r}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{here} must be a mapping with kind and prompts")
    bad = set(spec) - _CLASS_KEYS
    if bad:
        raise ConfigError(
            f"{here} has unknown key(s) {sorted(bad)}; allowed: {sorted(_CLASS_KEYS)}"
        )
    kind = spec.get("kind")
    if kind not in ("hazard", "normal"):
        raise ConfigError(f"{here} kind must be 'hazard' or 'normal', not {kind!r}")
    severity = spec.get("severity", "warning" if kind == "hazard" else "info")
    if severity not in SEVERITIES:
        raise ConfigError(f"{here} severity must be one of {SEVERITIES}, not {severity!r}")
    prompts = spec.get("prompts", [])
    examples, model = _examples(here, spec.get("examples", []), spec.get("model", ""))
    if examples and prompts:
        raise ConfigError(f"{here} is described by prompts or by examples, not both")
    if not examples and (
        not isinstance(prompts, list)
        or not prompts
        or not all(isinstance(p, str) and p.strip() for p in prompts)
    ):
        raise ConfigError(
            f"{here} needs a non-empty list of prompt strings (or examples: image embeddings)"
        )
    thresholds: dict[str, float | None] = {}
    for key in ("enter_threshold", "exit_threshold"):
        value = spec.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not -1 <= value <= 1
        ):
            raise ConfigError(f"{here} {key} must be a number in -1..1, not {value!r}")
        thresholds[key] = None if value is None else float(value)
    enter, exit_ = thresholds["enter_threshold"], thresholds["exit_threshold"]
    if enter is not None and exit_ is not None and exit_ > enter:
        raise ConfigError(f"{here} exit_threshold must be <= enter_threshold")
    cameras = spec.get("cameras", [])
    if not isinstance(cameras, list) or not all(
        isinstance(c, str) and _CAMERA.match(c) for c in cameras
    ):
        raise ConfigError(f"{here} cameras must be a list of camera names (empty: every camera)")
    return PromptClass(
        name=name,
        kind=kind,
        severity=severity,
        prompts=tuple(p.strip() for p in prompts),
        enter_threshold=enter,
        exit_threshold=exit_,
        description=str(spec.get("description", "")),
        normal=None
        if spec.get("normal") is None
        else ClassNormal.from_mapping(spec["normal"], here),
        cameras=tuple(dict.fromkeys(cameras)),
        examples=examples,
        model=model,
    )


def _examples(here: str, data: Any, model: Any) -> tuple[tuple[Example, ...], str]:
    """A class's examples: each {source, embedding (float16 base64)}, all of one size and
    of the named model."""
    if not isinstance(data, list) or len(data) > MAX_EXAMPLES:
        raise ConfigError(f"{here} examples must be a list of at most {MAX_EXAMPLES}")
    if not data:
        return (), ""
    if not isinstance(model, str) or not model.strip():
        raise ConfigError(f"{here} needs the model that embedded its examples (model:)")
    out: list[Example] = []
    dims = set()
    for i, item in enumerate(data):
        if not isinstance(item, dict) or set(item) != _EXAMPLE_KEYS:
            raise ConfigError(f"{here} example {i} must be a mapping of source and embedding")
        source, text = item["source"], item["embedding"]
        if not isinstance(source, str) or not 0 < len(source) <= 200:
            raise ConfigError(f"{here} example {i}: source must be 1-200 characters")
        try:
            raw = base64.b64decode(str(text), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"{here} example {i}: embedding is not base64") from None
        vector = np.frombuffer(raw[: len(raw) // 2 * 2], np.float16)
        if len(raw) % 2 or vector.size < 2 or not np.isfinite(vector).all() or not vector.any():
            raise ConfigError(f"{here} example {i}: embedding must be finite float16 values")
        dims.add(vector.size)
        out.append(Example(source, str(text)))
    if len(dims) > 1:
        raise ConfigError(f"{here} examples have embeddings of different sizes {sorted(dims)}")
    return tuple(out), model.strip()


def example_probability(
    cosines: npt.NDArray[np.floating[Any]],
) -> npt.NDArray[np.float64]:
    """A class by example's score from the cosines with its examples ([E, …] → […]):
    (1 + best cosine) / 2, in 0..1; its logit is Fisher's z of the cosine (module doc)."""
    best = np.max(np.asarray(cosines, np.float64), axis=0)
    out: npt.NDArray[np.float64] = np.clip((1.0 + best) / 2.0, 0.0, 1.0)
    return out


def _normal(data: Any, where: str) -> ClassNormal | None:
    return None if data is None else ClassNormal.from_mapping(data, f"{where} normal")


def load_bank(path: Path | None) -> PromptBank:
    """The configured bank, or the one shipped in config/prompts.yaml."""
    return PromptBank.from_file(path if path is not None else DEFAULT_BANK)


def softmax(logits: npt.NDArray[np.floating[Any]], axis: int = 0) -> npt.NDArray[np.float64]:
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    out: npt.NDArray[np.float64] = e / e.sum(axis=axis, keepdims=True)
    return out


def class_probabilities(
    class_cosines: npt.NDArray[np.floating[Any]], logit_scale: float
) -> npt.NDArray[np.float64]:
    """softmax(logit_scale × cosine) over classes (axis 0): [C] or [C, F] → same shape."""
    return softmax(logit_scale * np.asarray(class_cosines, np.float64), axis=0)


def class_cosines_from_prompts(
    prompt_cosines: npt.NDArray[np.floating[Any]],
    class_index: npt.NDArray[np.int64],
    n_classes: int,
) -> npt.NDArray[np.float64]:
    """Class cosines from per-prompt cosines, [P, F] → [C, F]: the mean over each class's prompts.

    Offline data holds only per-prompt similarities; their mean is the image's cosine with
    the (unnormalised) mean prompt embedding, which the live path normalises.
    """
    sims = np.asarray(prompt_cosines, np.float64)
    out = np.zeros((n_classes, *sims.shape[1:]), np.float64)
    np.add.at(out, class_index, sims)
    counts = np.bincount(class_index, minlength=n_classes).astype(np.float64)
    return out / counts.reshape(-1, *([1] * (sims.ndim - 1)))


class BankVersions:
    """The prompt banks whose scores an events service can read, by version: the bank
    file's version now and every one it had since the start. A version not known yet
    (workers rolled a new file out first) re-reads the file, at most every `recheck_s`."""

    def __init__(
        self,
        path: Path,
        recheck_s: float = 5.0,
        stored: Callable[[str], PromptBank | None] | None = None,
    ) -> None:
        """`stored(version)`: a version an admin made through the API (the database)."""
        self.path = path
        self.recheck_s = recheck_s
        self.stored = stored
        self._banks: dict[str, PromptBank] = {}
        self._checked = float("-inf")
        self._reload()

    def _reload(self) -> None:
        self._checked = time.monotonic()
        bank = load_bank(self.path)
        self._banks.setdefault(bank.version, bank)

    def get(self, version: str) -> PromptBank:
        """The bank of `version`; KeyError when neither memory nor the file has it."""
        bank = self._banks.get(version)
        if bank is None and self.stored is not None:
            bank = self.stored(version)
            if bank is not None:
                self._banks[version] = bank
        if bank is None and time.monotonic() - self._checked >= self.recheck_s:
            try:
                self._reload()
            except ConfigError as exc:  # a bad edit: keep what is known
                log.warning("prompt bank %s not re-read: %s", self.path, exc)
            bank = self._banks.get(version)
        if bank is None:
            raise KeyError(version)
        return bank
