"""DiffusionImageRunner through its real load and generation path, on the tiny random Stable Diffusion pipeline.

The tiny pipeline is built once per module into a temporary directory and loaded with `from_pretrained`, as a
real checkpoint would be. Two denoising steps at a 64-pixel base size keep each generation well under a second
on the CPU. The images are noise (random weights); the tests check sizes, determinism, and that each parameter
reaches the pipeline.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # set before huggingface_hub reads it: these tests never use the hub

import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from inference.runners.base import InputRejected  # noqa: E402
from inference.runners.diffusion_image import (  # noqa: E402
    ASPECT_RATIOS,
    DiffusionImageRunner,
    ModelLoadError,
    available,
    closest_aspect_ratio,
    image_size,
)
from inference.runners.tiny_diffusion import TINY_BASE_SIZE, build_tiny_diffusion  # noqa: E402

PARAMS = {"mode": "text-to-image", "prompt": "a horse", "seed": 0}


class Progress:
    """Records progress fractions; runners may report from any thread."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def __call__(self, fraction: float) -> None:
        self.values.append(fraction)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    started = time.perf_counter()
    path = build_tiny_diffusion(tmp_path_factory.mktemp("tiny-diffusion"))
    print(f"tiny Stable Diffusion built in {time.perf_counter() - started:.2f} s")
    return path


@pytest.fixture(scope="module")
def cpu_runner(tiny_model_dir: Path):
    runner = DiffusionImageRunner(tiny_model_dir, device="cpu", num_inference_steps=2, base_size=TINY_BASE_SIZE)
    yield runner
    runner.unload()


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def _write_image(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (80, 60)) -> Path:
    rng = np.random.default_rng(sum(colour))
    noise = rng.integers(0, 40, size=(size[1], size[0], 3))
    Image.fromarray(np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)).save(path)
    return path


def test_tiny_model_is_small_and_available(tiny_model_dir: Path, tmp_path: Path):
    files = [p for p in tiny_model_dir.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 10 * 2**20
    assert any(p.suffix == ".safetensors" for p in files) and not any(p.suffix == ".bin" for p in files)
    assert available(tiny_model_dir)
    assert not available(tmp_path)


@pytest.mark.parametrize("ratio", list(ASPECT_RATIOS))
def test_image_sizes_keep_the_ratio_in_multiples_of_8(ratio: str):
    width, height = image_size(ratio, 512)
    w, h = ASPECT_RATIOS[ratio]
    assert width % 8 == 0 and height % 8 == 0
    assert width / height == pytest.approx(w / h, rel=0.05)
    assert width * height == pytest.approx(512 * 512, rel=0.06)
    assert closest_aspect_ratio(w * 100, h * 100) == ratio


@pytest.fixture(scope="module")
def first_image(cpu_runner: DiffusionImageRunner, tmp_path_factory: pytest.TempPathFactory):
    progress = Progress()
    artifacts = cpu_runner.run({}, {**PARAMS, "aspect_ratio": "16:9"}, tmp_path_factory.mktemp("first"), progress)
    return artifacts, progress.values


def test_text_to_image_writes_a_png_of_the_aspect_ratio(first_image, tiny_model_dir: Path):
    artifacts, values = first_image

    assert artifacts.mesh is None
    assert [p.name for p in artifacts.images] == ["image_0.png"]
    with Image.open(artifacts.images[0]) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        width, height = image.size
    assert width > height and (width, height) == image_size("16:9", TINY_BASE_SIZE)
    meta = artifacts.metadata
    assert (meta["width"], meta["height"]) == (width, height)
    assert (meta["model"], meta["mode"], meta["device"], meta["dtype"]) == (
        "diffusion-image",
        "text-to-image",
        "cpu",
        "float32",
    )
    assert (meta["steps"], meta["seed"], meta["images"]) == (2, 0, 1)
    assert meta["seconds"] >= 0
    assert values[0] == 0.0 and values[-1] == 1.0
    assert all(a <= b for a, b in zip(values, values[1:], strict=False))
    assert len(values) >= 2 + 2  # start, loaded, one per denoising step, end


def test_same_seed_gives_the_same_bytes_after_a_reload(cpu_runner: DiffusionImageRunner, first_image, tmp_path: Path):
    first, _ = first_image
    cpu_runner.unload()
    assert not cpu_runner.loaded and cpu_runner.pipeline is None

    again = cpu_runner.run({}, {**PARAMS, "aspect_ratio": "16:9"}, tmp_path / "again", Progress())  # lazy reload
    other_seed = cpu_runner.run({}, {**PARAMS, "aspect_ratio": "16:9", "seed": 1}, tmp_path / "other", Progress())

    assert cpu_runner.loaded
    assert first.images[0].read_bytes() == again.images[0].read_bytes()
    assert again.metadata == {**first.metadata, "seconds": again.metadata["seconds"]}
    assert not np.array_equal(_pixels(first.images[0]), _pixels(other_seed.images[0]))


def test_multi_view_gives_three_views_of_the_same_seed(cpu_runner: DiffusionImageRunner, tmp_path: Path):
    progress = Progress()
    views = cpu_runner.run({}, {**PARAMS, "generate_multi_view": True}, tmp_path / "views", progress)
    front = cpu_runner.run({}, {**PARAMS, "prompt": "a horse, front view"}, tmp_path / "front", Progress())

    assert [p.name for p in views.images] == ["image_0.png", "image_1.png", "image_2.png"]
    assert views.metadata["images"] == 3
    pixels = [_pixels(p) for p in views.images]
    assert all(p.shape == (TINY_BASE_SIZE, TINY_BASE_SIZE, 3) for p in pixels)
    assert not np.array_equal(pixels[0], pixels[1]) and not np.array_equal(pixels[1], pixels[2])
    # The first view is the prompt with ", front view" at the same seed.
    np.testing.assert_array_equal(pixels[0], _pixels(front.images[0]))
    values = progress.values
    assert values[0] == 0.0 and values[-1] == 1.0
    assert all(a <= b for a, b in zip(values, values[1:], strict=False))
    assert len(values) >= 2 + 3 * 2 + 1


def test_pose_mode_is_appended_to_the_prompt(cpu_runner: DiffusionImageRunner, tmp_path: Path):
    posed = cpu_runner.run({}, {**PARAMS, "pose_mode": "a-pose"}, tmp_path / "posed", Progress())
    spelled = cpu_runner.run(
        {}, {**PARAMS, "prompt": "a horse, standing in an A-pose"}, tmp_path / "spelled", Progress()
    )
    plain = cpu_runner.run({}, PARAMS, tmp_path / "plain", Progress())

    assert posed.images[0].read_bytes() == spelled.images[0].read_bytes()
    assert posed.images[0].read_bytes() != plain.images[0].read_bytes()


def test_image_to_image_starts_from_the_init_image(cpu_runner: DiffusionImageRunner, tmp_path: Path):
    red = _write_image(tmp_path / "red.png", (200, 20, 20))
    blue = _write_image(tmp_path / "blue.png", (20, 20, 200))
    params = {**PARAMS, "mode": "image-to-image", "aspect_ratio": "4:3"}

    from_red = cpu_runner.run({"images": [red, blue]}, params, tmp_path / "from-red", Progress())
    again = cpu_runner.run({"images": [red]}, params, tmp_path / "again", Progress())
    from_blue = cpu_runner.run({"images": [blue]}, params, tmp_path / "from-blue", Progress())
    text_only = cpu_runner.run({}, {**PARAMS, "aspect_ratio": "4:3"}, tmp_path / "text", Progress())

    meta = from_red.metadata
    assert (meta["mode"], meta["pipeline"], meta["strength"]) == (
        "image-to-image",
        "StableDiffusionImg2ImgPipeline",
        0.75,
    )
    assert _pixels(from_red.images[0]).shape == (*image_size("4:3", TINY_BASE_SIZE)[::-1], 3)
    assert from_red.images[0].read_bytes() == again.images[0].read_bytes()  # only the first image is the init image
    assert not np.array_equal(_pixels(from_red.images[0]), _pixels(from_blue.images[0]))
    assert not np.array_equal(_pixels(from_red.images[0]), _pixels(text_only.images[0]))


def test_image_to_image_defaults_to_the_init_images_ratio(cpu_runner: DiffusionImageRunner, tmp_path: Path):
    tall = _write_image(tmp_path / "tall.png", (30, 160, 30), size=(90, 160))  # 9:16
    result = cpu_runner.run({"images": [tall]}, {**PARAMS, "mode": "image-to-image"}, tmp_path / "out", Progress())
    assert (result.metadata["width"], result.metadata["height"]) == image_size("9:16", TINY_BASE_SIZE)


def test_remove_background_writes_rgba_from_the_cutout_mask(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    loaded_from: list[Path] = []

    class FakeCutout:
        """Stands in for `inference.runners.cutout.Cutout`: keeps the left half of the image."""

        def __init__(self, model_path: Path) -> None:
            loaded_from.append(model_path)

        def mask(self, rgb: np.ndarray) -> np.ndarray:
            assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
            mask = np.zeros(rgb.shape[:2], dtype=np.float32)
            mask[:, : rgb.shape[1] // 2] = 1.0
            return mask

    monkeypatch.setitem(sys.modules, "inference.runners.cutout", types.SimpleNamespace(Cutout=FakeCutout))
    runner = DiffusionImageRunner(
        tiny_model_dir,
        device="cpu",
        num_inference_steps=2,
        base_size=TINY_BASE_SIZE,
        cutout_model=tmp_path / "cutout.onnx",
    )
    try:
        cut = runner.run({}, {**PARAMS, "remove_background": True}, tmp_path / "cut", Progress())
        runner.run({}, {**PARAMS, "remove_background": True, "seed": 3}, tmp_path / "cut-again", Progress())
        kept = runner.run({}, PARAMS, tmp_path / "kept", Progress())
    finally:
        runner.unload()

    assert loaded_from == [tmp_path / "cutout.onnx"]  # loaded once, kept for the next call
    assert cut.metadata["background_removed"] is True and kept.metadata["background_removed"] is False
    rgba = _pixels(cut.images[0])
    assert rgba.shape == (TINY_BASE_SIZE, TINY_BASE_SIZE, 4)
    assert (rgba[:, : TINY_BASE_SIZE // 2, 3] == 255).all() and (rgba[:, TINY_BASE_SIZE // 2 :, 3] == 0).all()
    np.testing.assert_array_equal(rgba[..., :3], _pixels(kept.images[0]))


def test_remove_background_without_a_cutout_model_keeps_rgb(cpu_runner: DiffusionImageRunner, tmp_path: Path):
    result = cpu_runner.run({}, {**PARAMS, "remove_background": True}, tmp_path, Progress())
    assert _pixels(result.images[0]).shape[2] == 3
    assert result.metadata["background_removed"] is False


def test_missing_or_incomplete_model_dir_is_a_clear_error(tiny_model_dir: Path, tmp_path: Path):
    with pytest.raises(ModelLoadError, match="model_index.json is missing"):
        DiffusionImageRunner(tmp_path / "nothing", device="cpu").load()
    no_weights = tmp_path / "no-weights"
    shutil.copytree(tiny_model_dir, no_weights, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    runner = DiffusionImageRunner(no_weights, device="cpu")
    with pytest.raises(ModelLoadError, match="could not load the diffusion pipeline from"):
        runner.run({}, PARAMS, tmp_path / "out", Progress())
    assert not runner.loaded
    no_unet = tmp_path / "no-unet"
    shutil.copytree(tiny_model_dir, no_unet, ignore=shutil.ignore_patterns("unet"))
    with pytest.raises(ModelLoadError, match="incomplete diffusion pipeline .*lists unet but there is no such folder"):
        DiffusionImageRunner(no_unet, device="cpu").load()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"prompt": "  "}, "prompt"),
        ({"prompt": "a horse", "aspect_ratio": "5:4"}, "aspect_ratio"),
        ({"prompt": "a horse", "pose_mode": "sitting"}, "pose_mode"),
        ({"prompt": "a horse", "mode": "image-to-image"}, "reference image"),
    ],
)
def test_bad_params_are_rejected_before_loading(tiny_model_dir: Path, tmp_path: Path, params, message):
    runner = DiffusionImageRunner(tiny_model_dir, device="cpu")
    with pytest.raises(ValueError, match=message):
        runner.run({}, params, tmp_path, Progress())
    assert not runner.loaded


def test_bad_image_to_image_inputs_are_rejected_before_loading(tiny_model_dir: Path, tmp_path: Path):
    runner = DiffusionImageRunner(tiny_model_dir, device="cpu")
    params = {"prompt": "a horse", "mode": "image-to-image"}
    not_an_image = tmp_path / "x.png"
    not_an_image.write_bytes(b"not a png")
    with pytest.raises(InputRejected, match="could not be read"):
        runner.run({"images": [not_an_image]}, params, tmp_path, Progress())
    image = _write_image(tmp_path / "ok.png", (100, 100, 100))
    with pytest.raises(ValueError, match="strength"):
        runner.run({"images": [image]}, {**params, "strength": 1.5}, tmp_path, Progress())
    assert not runner.loaded


def test_unload_frees_the_pipelines(tiny_model_dir: Path, tmp_path: Path):
    runner = DiffusionImageRunner(tiny_model_dir, device="cpu", num_inference_steps=2, base_size=TINY_BASE_SIZE)
    on_disk = runner.weight_bytes  # not loaded: read from the safetensors headers
    assert runner.load() is runner and runner.loaded
    pipe = runner.pipeline
    assert pipe is not None
    assert runner.weight_bytes == pytest.approx(on_disk, rel=0.02)
    assert runner.estimated_vram_gb > runner.weight_bytes / 2**30
    runner.unload()
    assert not runner.loaded and runner.pipeline is None
    runner.unload()  # idempotent


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_text_to_image_on_cuda(tiny_model_dir: Path, tmp_path: Path):
    runner = DiffusionImageRunner(tiny_model_dir, device="cuda", num_inference_steps=2, base_size=TINY_BASE_SIZE)
    assert runner.dtype == torch.float16
    progress = Progress()
    image = tmp_path / "init.png"
    try:
        first = runner.run({}, {**PARAMS, "aspect_ratio": "16:9"}, tmp_path / "a", progress)
        again = runner.run({}, {**PARAMS, "aspect_ratio": "16:9"}, tmp_path / "b", Progress())
        shutil.copy(first.images[0], image)
        img2img = runner.run({"images": [image]}, {**PARAMS, "mode": "image-to-image"}, tmp_path / "c", Progress())
    finally:
        runner.unload()

    with Image.open(first.images[0]) as decoded:
        width, height = decoded.size
    assert (width, height) == image_size("16:9", TINY_BASE_SIZE)
    assert first.metadata["device"] == "cuda" and first.metadata["dtype"] == "float16"
    assert progress.values[0] == 0.0 and progress.values[-1] == 1.0
    assert first.images[0].read_bytes() == again.images[0].read_bytes()
    assert (img2img.metadata["width"], img2img.metadata["height"]) == (width, height)  # ratio from the init image
