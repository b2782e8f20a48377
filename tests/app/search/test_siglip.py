"""The SigLIP adapter's real loading and encoding code, run on tiny random weights built in a temporary directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import SiglipModel, SiglipProcessor

from app.search.siglip import SiglipEncoder, load_siglip
from tests.app.search.tiny_siglip import TINY_DIM, TINY_MAX_LENGTH, make_tiny_siglip


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_siglip(tmp_path_factory.mktemp("siglip") / "tiny-siglip")


@pytest.fixture(scope="module")
def encoder(model_dir: Path) -> SiglipEncoder:
    return SiglipEncoder(model_dir)


def _image(seed: int, size: tuple[int, int] = (48, 40), mode: str = "RGB") -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], len(mode)), dtype=np.uint8)
    return Image.fromarray(pixels, mode)


def _assert_unit_rows(vectors: np.ndarray, n: int) -> None:
    assert vectors.shape == (n, TINY_DIM)
    assert vectors.dtype == np.float32
    assert np.all(np.isfinite(vectors))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


class TestLoading:
    def test_name_and_dim_come_from_the_directory_and_config(self, encoder: SiglipEncoder) -> None:
        assert encoder.name == "siglip:tiny-siglip"
        assert encoder.dim == TINY_DIM
        assert encoder.max_length == TINY_MAX_LENGTH
        assert not encoder.model.training

    def test_two_loads_give_the_same_vectors(self, model_dir: Path, encoder: SiglipEncoder) -> None:
        again = SiglipEncoder(str(model_dir))
        assert again.name == encoder.name
        texts = ["a red chair", "low poly dragon castle"]
        images = [_image(1), _image(2)]
        np.testing.assert_array_equal(again.encode_texts(texts), encoder.encode_texts(texts))
        np.testing.assert_array_equal(again.encode_images(images), encoder.encode_images(images))

    def test_load_siglip_is_cached_by_path_string_and_device(self, model_dir: Path) -> None:
        first = load_siglip(model_dir)
        assert load_siglip(str(model_dir)) is first
        assert load_siglip(model_dir, "cpu") is first

    def test_a_missing_directory_raises_with_its_path(self, tmp_path: Path) -> None:
        missing = tmp_path / "no-such-siglip"
        with pytest.raises(FileNotFoundError, match="no-such-siglip"):
            SiglipEncoder(missing)

    def test_a_directory_without_a_model_raises_with_its_path(self, tmp_path: Path) -> None:
        empty = tmp_path / "empty-dir"
        empty.mkdir()
        with pytest.raises(ValueError, match="empty-dir"):
            SiglipEncoder(empty)

    def test_a_file_instead_of_a_directory_raises_with_its_path(self, tmp_path: Path) -> None:
        file = tmp_path / "weights.bin"
        file.write_bytes(b"x")
        with pytest.raises(ValueError, match="weights.bin"):
            SiglipEncoder(file)


class TestAgreesWithTheModel:
    def test_vectors_are_siglip_text_and_image_embeds(self, model_dir: Path, encoder: SiglipEncoder) -> None:
        """The reference: SiglipModel's own forward pass, which returns both towers' normalised embeddings."""
        texts, images = ["a red chair", "stone castle with a dragon"], [_image(12), _image(13)]
        model = SiglipModel.from_pretrained(model_dir).eval()
        processor = SiglipProcessor.from_pretrained(model_dir)
        inputs = processor(text=texts, images=images, padding="max_length", return_tensors="pt")
        with torch.no_grad():
            out = model(**inputs)
        np.testing.assert_allclose(encoder.encode_texts(texts), out.text_embeds.numpy(), atol=1e-5)
        np.testing.assert_allclose(encoder.encode_images(images), out.image_embeds.numpy(), atol=1e-5)


class TestEncodeTexts:
    def test_shape_dtype_and_unit_norm(self, encoder: SiglipEncoder) -> None:
        _assert_unit_rows(encoder.encode_texts(["a red chair", "a wooden table", "robot"]), 3)

    def test_texts_of_different_lengths_including_longer_than_the_limit(self, encoder: SiglipEncoder) -> None:
        long = " ".join(["the green dragon with a metal shield"] * 6)  # 42 words, truncated to 16 tokens
        texts = ["", "cat", "a low poly wooden house", long, "zzz unknown words"]
        vectors = encoder.encode_texts(texts)
        _assert_unit_rows(vectors, len(texts))
        assert np.linalg.matrix_rank(vectors, tol=1e-4) == len(texts)  # all different

    def test_batch_matches_one_by_one(self, encoder: SiglipEncoder) -> None:
        texts = ["a red chair", "stone castle", "the black cat with a lamp"]
        together = encoder.encode_texts(texts)
        alone = np.concatenate([encoder.encode_texts([t]) for t in texts])
        np.testing.assert_allclose(together, alone, atol=1e-5)

    def test_no_texts_give_an_empty_matrix(self, encoder: SiglipEncoder) -> None:
        assert encoder.encode_texts([]).shape == (0, TINY_DIM)


class TestEncodeImages:
    def test_shape_dtype_and_unit_norm(self, encoder: SiglipEncoder) -> None:
        _assert_unit_rows(encoder.encode_images([_image(1), _image(2, size=(20, 64))]), 2)

    def test_an_identical_image_gives_cosine_one(self, encoder: SiglipEncoder) -> None:
        a, b = encoder.encode_images([_image(3), _image(3)])
        assert float(a @ b) == pytest.approx(1.0, abs=1e-6)

    def test_different_images_give_different_vectors(self, encoder: SiglipEncoder) -> None:
        vectors = encoder.encode_images([_image(4), _image(5), Image.new("RGB", (32, 32), (200, 30, 30))])
        cosines = vectors @ vectors.T
        assert np.all(cosines[~np.eye(3, dtype=bool)] < 0.9999)

    def test_batch_matches_one_by_one(self, encoder: SiglipEncoder) -> None:
        images = [_image(6), _image(7, size=(64, 64)), _image(8, size=(33, 17))]
        together = encoder.encode_images(images)
        alone = np.concatenate([encoder.encode_images([img]) for img in images])
        np.testing.assert_allclose(together, alone, atol=1e-5)

    def test_rgba_is_composited_on_white(self, encoder: SiglipEncoder) -> None:
        rgba = _image(9, mode="RGBA")
        rgba.putalpha(0)  # random colours, fully transparent: white once composited
        rgba.paste((10, 120, 240, 255), (8, 8, 24, 24))  # an opaque blue square
        expected = Image.new("RGB", rgba.size, (255, 255, 255))
        expected.paste((10, 120, 240), (8, 8, 24, 24))
        got, want = encoder.encode_images([rgba, expected])
        _assert_unit_rows(np.stack([got, want]), 2)
        assert float(got @ want) == pytest.approx(1.0, abs=1e-6)

    def test_greyscale_and_palette_images_are_converted(self, encoder: SiglipEncoder) -> None:
        grey = _image(10).convert("L")
        palette = _image(11).convert("P")
        _assert_unit_rows(encoder.encode_images([grey, palette]), 2)

    def test_no_images_give_an_empty_matrix(self, encoder: SiglipEncoder) -> None:
        assert encoder.encode_images([]).shape == (0, TINY_DIM)
