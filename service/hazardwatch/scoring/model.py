"""CLIP model loading (the openai `clip` package) and the image/text encoder interface."""

from __future__ import annotations

import contextlib
import logging
import pickle
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from hazardwatch.errors import ModelLoadError
from hazardwatch.scoring.vision import FastVisionTransformer

log = logging.getLogger(__name__)
Precision = Literal["fp32", "fp16", "bf16"]
Embeddings = npt.NDArray[np.float32]
# Least cosine between the fast CPU image path and clip's fp32 forward on the load-time probe
# (measured: 0.99995 in bf16, 0.9999999 in fp32 on ViT-B/32).
PROBE_COSINE: dict[Precision, float] = {"bf16": 0.99, "fp32": 0.9999}


class Encoder(Protocol):
    """What the worker needs from a model: normalised embeddings and CLIP's logit scale."""

    name: str
    resolution: int
    logit_scale: float
    device: str
    precision: Precision

    def encode_images(self, batch: npt.NDArray[np.float32]) -> Embeddings: ...

    def encode_text(self, prompts: Sequence[str]) -> Embeddings: ...


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(
            "scoring.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'"
        )
    return device


def resolve_precision(precision: str, device: str) -> Precision:
    """auto: fp16 on CUDA, bf16 on CPUs with native bf16 support, else fp32."""
    if precision == "auto":
        if device == "cuda":
            return "fp16"
        return "bf16" if _cpu_has_bf16() else "fp32"
    if precision == "fp16" and device == "cpu":
        raise ModelLoadError("fp16 is for CUDA; on the CPU use bf16, fp32 or auto")
    return precision  # type: ignore[return-value]


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16", "avx512bw"))


def _import_clip() -> Any:
    """openai-clip, without the pkg_resources deprecation warning it prints at import on
    every start (its own code, nothing an operator can act on)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="pkg_resources is deprecated", category=UserWarning
        )
        import clip
    return clip


def weights_hint(name: str, download_dir: Path) -> str:
    clip = _import_clip()

    url = clip.clip._MODELS.get(name)
    if url is None:
        return (
            f"{name!r} is neither a file nor a known model name "
            f"({', '.join(clip.available_models())})"
        )
    filename = url.rsplit("/", 1)[-1]
    return (
        f"CLIP weights for {name} could not be downloaded (offline?). Download {url} on a "
        f"machine with internet access and copy it to {download_dir / filename}, or set "
        f"scoring.model (--model) to the path of a local weights file"
    )


@dataclass
class ClipEncoder:
    """A loaded CLIP model in inference mode.

    On the CPU, ViT image encoders run through `vision` (batch-first, weights cast once,
    oneDNN-prepacked linears; see scoring/vision.py); other encoders, and CUDA, run clip's
    own forward (fp16 weights on CUDA, bf16 autocast on the CPU).
    """

    name: str
    model: Any
    device: str
    precision: Precision
    resolution: int
    logit_scale: float
    vision: FastVisionTransformer | None = None

    @classmethod
    def from_model(
        cls,
        model: Any,
        name: str,
        device: str,
        precision: Precision,
        batch_hint: int = 16,
        fast_path: bool = True,
    ) -> ClipEncoder:
        """Put a clip.model.CLIP on `device` in `precision`, with the CPU image path checked."""
        import torch

        model = model.to(device)
        model = model.half() if precision == "fp16" else model.float()
        model.eval()
        with torch.inference_mode():
            scale = float(model.logit_scale.exp().item())
        vision = None
        if fast_path and device == "cpu":
            dtype = torch.bfloat16 if precision == "bf16" else torch.float32
            vision = FastVisionTransformer.from_clip(model.visual, dtype, batch_hint)
            if vision is not None and not _agrees_with_clip(vision, model, precision):
                vision = None
        resolution = int(model.visual.input_resolution)
        return cls(name, model, device, precision, resolution, scale, vision)

    @property
    def image_kernels(self) -> str:
        """Which image path runs: onednn-packed, plain (the batch-first path), or clip."""
        return "clip" if self.vision is None else self.vision.kernels

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        import torch

        if self.precision == "bf16" and self.device == "cpu":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                yield
        else:
            yield

    def encode_images(self, batch: npt.NDArray[np.float32]) -> Embeddings:
        import torch

        with torch.inference_mode():
            tensor = torch.from_numpy(batch)
            if self.vision is not None:
                features = self.vision(tensor).float()
            else:
                dtype = torch.float16 if self.precision == "fp16" else torch.float32
                tensor = tensor.to(self.device, dtype=dtype, non_blocking=True)
                with self._autocast():
                    features = self.model.encode_image(tensor).float()
            features = features / features.norm(dim=-1, keepdim=True)
        out: Embeddings = features.cpu().numpy().astype(np.float32)
        return out

    def encode_text(self, prompts: Sequence[str]) -> Embeddings:
        import torch

        clip = _import_clip()

        with torch.inference_mode(), self._autocast():
            tokens = clip.tokenize(list(prompts), truncate=True).to(self.device)
            features = self.model.encode_text(tokens).float()
            features = features / features.norm(dim=-1, keepdim=True)
        out: Embeddings = features.cpu().numpy().astype(np.float32)
        return out


def _agrees_with_clip(vision: FastVisionTransformer, model: Any, precision: Precision) -> bool:
    """The fast image path gives clip's own fp32 features on a fixed probe batch.

    It uses internal oneDNN ops; should a torch build compute them differently, the
    service falls back to clip's forward (and says so) instead of scoring with bad features.
    """
    import torch

    generator = torch.Generator().manual_seed(0)
    probe = torch.randn(2, 3, vision.resolution, vision.resolution, generator=generator)
    with torch.inference_mode():
        expected = model.visual(probe.float())
        try:
            got = vision(probe).float()
        except RuntimeError as exc:
            log.warning("fast CPU image path failed its check (%s); using clip's forward", exc)
            return False
    cosine = float(torch.nn.functional.cosine_similarity(got, expected).min())
    needed = PROBE_COSINE[precision]
    if cosine < needed:
        log.warning(
            "fast CPU image path disagrees with clip's forward (cosine %.5f < %g); "
            "using clip's forward",
            cosine,
            needed,
        )
        return False
    return True


def load_clip(
    name_or_path: str,
    device: str = "auto",
    precision: str = "auto",
    download_dir: Path = Path("~/.cache/clip"),
    batch_size: int = 16,
    fast_path: bool = True,
) -> ClipEncoder:
    """Load a CLIP model by name (downloaded to `download_dir`) or from a local .pt file.

    Local files may be OpenAI's TorchScript archives or plain state dicts; with current
    torch, clip.load cannot read a state dict (it reads the file twice without
    rewinding), so those go through clip.model.build_model. `batch_size` tunes the CPU
    image path's weight layout; `fast_path` False keeps clip's own image forward.
    """
    clip = _import_clip()

    device = resolve_device(device)
    resolved: Precision = resolve_precision(precision, device)
    download_dir = download_dir.expanduser()
    path = Path(name_or_path).expanduser()
    try:
        if path.is_file():
            model = _load_file(path, device)
        elif name_or_path in clip.available_models():
            model, _ = clip.load(
                name_or_path, device=device, jit=False, download_root=str(download_dir)
            )
        else:
            raise ModelLoadError(weights_hint(name_or_path, download_dir))
    except ModelLoadError:
        raise
    except (OSError, RuntimeError, ValueError, EOFError, KeyError, pickle.UnpicklingError) as exc:
        if path.is_file():
            raise ModelLoadError(
                f"cannot load CLIP weights from {path}: {exc}. Give an OpenAI CLIP .pt file "
                "(TorchScript archive or state dict)"
            ) from None
        raise ModelLoadError(f"{weights_hint(name_or_path, download_dir)} ({exc})") from None
    name = path.name if path.is_file() else name_or_path
    encoder = ClipEncoder.from_model(model, name, device, resolved, batch_size, fast_path)
    log.info(
        "CLIP %s loaded on %s (%s, %d px, image path %s)",
        encoder.name,
        device,
        resolved,
        encoder.resolution,
        encoder.image_kernels,
    )
    return encoder


def _load_file(path: Path, device: str) -> Any:
    import torch

    clip = _import_clip()

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated
            archive = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
        return clip.model.build_model(archive.state_dict())
    except RuntimeError:
        pass  # not TorchScript: a state dict
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not any(k.startswith("visual.") for k in state):
        raise ValueError("the file holds no CLIP state dict (no visual.* weights)")
    return clip.model.build_model(state)
