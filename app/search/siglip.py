"""SigLIP image/text embeddings for asset search: the real adapter for google/siglip-* weights in a local directory.

Point it at a directory holding a transformers checkpoint (config.json, the weights, the tokenizer and the image
processor), e.g. `siglip-base-patch16-224` (768-d, English only). `siglip2` and multilingual checkpoints work the
same way when the configured directory holds one, as does any transformers CLIP-family dual encoder with
`get_text_features` / `get_image_features`. Nothing is downloaded (`local_files_only=True`). The test suite runs
this code on tiny random weights that it builds itself (tests/app/search/tiny_siglip.py).

Both towers embed into one space, so a text query can find thumbnails. Vectors are float32 and L2-normalised, so a
dot product is the cosine similarity. The model always runs in float32, on CPU and GPU alike, so vectors indexed on
one device can be compared with queries embedded on another. Encoding blocks: call it from an executor.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModel, AutoProcessor, AutoTokenizer

BATCH_SIZE = 32  # texts or images per forward pass
_NO_MAX_LENGTH = 1_000_000  # tokenizers without a configured limit report a huge sentinel (about 1e30)


class SiglipEncoder:
    """A SigLIP (or any transformers CLIP-family dual encoder with get_text_features/get_image_features) loaded from a
    local directory."""

    name: str
    dim: int

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        directory = Path(path).expanduser()
        if not directory.exists():
            raise FileNotFoundError(f"SigLIP model directory not found: {directory}")
        if not directory.is_dir():
            raise ValueError(f"SigLIP model path is not a directory: {directory}")
        if not (directory / "config.json").is_file():
            raise ValueError(f"not a transformers model directory (no config.json): {directory}")
        self.path = directory
        self.device = torch.device(device)
        try:
            model = AutoModel.from_pretrained(directory, local_files_only=True, dtype=torch.float32)
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"cannot load a model from {directory}: {exc}") from exc
        if not all(callable(getattr(model, m, None)) for m in ("get_text_features", "get_image_features")):
            raise ValueError(f"{directory} holds a {type(model).__name__}, not a dual text/image encoder")
        self.model = model.to(self.device).eval()
        self.tokenizer, self.image_processor = _load_preprocessors(directory)
        self.max_length = _max_text_length(self.tokenizer, self.model.config)
        self._text_args = _parameters(self.model.get_text_features)
        self._image_args = _parameters(self.model.get_image_features)
        self.name = "siglip:" + directory.resolve().name
        self.dim = _embedding_dim(self.model.config) or self._probe_dim()

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """(n, dim) float32 unit rows; each text padded to the tokenizer's max length (as SigLIP was trained) and
        truncated to it."""
        return self._encode(list(texts), self._text_batch, self.model.get_text_features, self._text_args)

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        """(n, dim) float32 unit rows; images are converted to RGB, transparent ones composited on white first."""
        return self._encode([_to_rgb(image) for image in images], self._image_batch, self.model.get_image_features,
                            self._image_args)  # fmt: skip

    def _text_batch(self, texts: list[str]) -> Mapping[str, Any]:
        return self.tokenizer(texts, padding="max_length", truncation=True, max_length=self.max_length,
                              return_tensors="pt")  # fmt: skip

    def _image_batch(self, images: list[Image.Image]) -> Mapping[str, Any]:
        return self.image_processor(images=images, return_tensors="pt")

    def _encode(
        self,
        items: list[Any],
        prepare: Callable[[list[Any]], Mapping[str, Any]],
        features: Callable[..., Any],
        accepted: frozenset[str],
    ) -> np.ndarray:
        chunks: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(items), BATCH_SIZE):
                batch = prepare(items[start : start + BATCH_SIZE])
                inputs = {k: v.to(self.device) for k, v in batch.items() if k in accepted and torch.is_tensor(v)}
                out = features(**inputs)
                if not torch.is_tensor(out):  # transformers 5 returns BaseModelOutputWithPooling here
                    out = out.pooler_output
                out = torch.nn.functional.normalize(out.float(), dim=-1)
                chunks.append(out.cpu().numpy().astype(np.float32, copy=False))
        dim = getattr(self, "dim", None)
        if not chunks:
            return np.zeros((0, dim or 0), dtype=np.float32)
        vectors = np.concatenate(chunks)
        if dim is not None and vectors.shape[1] != dim:
            raise RuntimeError(f"{self.path} produced {vectors.shape[1]}-d vectors, expected {dim}")
        return vectors

    def _probe_dim(self) -> int:
        return int(self.encode_texts(["a"]).shape[1])


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, device: str) -> SiglipEncoder:
    return SiglipEncoder(path, device)


def load_siglip(path: str | Path, device: str = "cpu") -> SiglipEncoder:
    """The encoder for a model directory, loaded once per (str(path), device)."""
    return _load_cached(str(path), device)


def _load_preprocessors(directory: Path) -> tuple[Any, Any]:
    """The tokenizer and image processor: from the processor when it builds, else each on its own."""
    try:
        processor = AutoProcessor.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError, ImportError):
        processor = None
    tokenizer = getattr(processor, "tokenizer", None)
    image_processor = getattr(processor, "image_processor", None)
    if tokenizer is not None and image_processor is not None:
        return tokenizer, image_processor
    try:
        return (AutoTokenizer.from_pretrained(directory, local_files_only=True),
                AutoImageProcessor.from_pretrained(directory, local_files_only=True))  # fmt: skip
    except ImportError as exc:  # e.g. a sentencepiece-only tokenizer (spiece.model) without the sentencepiece package
        raise ImportError(f"cannot load the tokenizer or image processor in {directory}: {exc}") from exc
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"no usable tokenizer and image processor in {directory}: {exc}") from exc


def _max_text_length(tokenizer: Any, config: Any) -> int:
    """The tokenizer's model_max_length when set, else the text tower's position count, never beyond the latter."""
    positions = getattr(_text_config(config), "max_position_embeddings", None)
    configured = getattr(tokenizer, "model_max_length", None)
    length = configured if isinstance(configured, int) and 0 < configured < _NO_MAX_LENGTH else positions
    if length is None:
        raise ValueError("neither the tokenizer nor the text config sets a maximum text length")
    return int(min(length, positions) if positions else length)


def _embedding_dim(config: Any) -> int | None:
    """The shared space's width: SigLIP's text head (projection_size), CLIP's projection_dim, else None (probe)."""
    text = _text_config(config)
    for value in (getattr(text, "projection_size", None), getattr(config, "projection_dim", None)):
        if isinstance(value, int) and value > 0:
            return value
    return None


def _text_config(config: Any) -> Any:
    return getattr(config, "text_config", None) or config


def _parameters(method: Callable[..., Any]) -> frozenset[str]:
    """The named inputs a features method takes (its **kwargs excluded), so extra processor outputs are dropped."""
    params = inspect.signature(method).parameters.values()
    return frozenset(p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB; an image with transparency (RGBA, LA, a palette with a transparent colour) is composited on white."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")
