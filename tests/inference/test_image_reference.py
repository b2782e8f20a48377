"""The text-to-image and image-to-image reference runners, checked by reading their PNGs back with PIL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from inference.bundled_models import u2netp_path
from inference.runners.base import InputRejected, RunnerArtifacts
from inference.runners.image_reference import ImageEditRunner, ProceduralImageRunner, edit_plan


def text_to_image(out: Path, prompt: str = "a red chair", **params) -> RunnerArtifacts:
    return ProceduralImageRunner().run({}, {"prompt": prompt, **params}, out, lambda _f: None)


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im, dtype=np.int16).copy()


def mode_and_size(path: Path) -> tuple[str, tuple[int, int]]:
    with Image.open(path) as im:
        return im.mode, im.size


def object_mask(rgb: np.ndarray) -> np.ndarray:
    """Pixels that differ from their row's background (both backgrounds are uniform along each row)."""
    background = rgb[:, :1, :3]
    return np.abs(rgb[..., :3] - background).sum(axis=2) > 40


def red_share(rgb: np.ndarray, mask: np.ndarray) -> float:
    r, g, b = (rgb[..., k][mask] for k in range(3))
    return float(np.mean((r > g + 40) & (r > b + 40)))


def rows_of(mask: np.ndarray) -> tuple[int, int]:
    rows = np.nonzero(mask.any(axis=1))[0]
    return int(rows[0]), int(rows[-1])


# --- text-to-image -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def red_chair(tmp_path_factory: pytest.TempPathFactory) -> RunnerArtifacts:
    return text_to_image(tmp_path_factory.mktemp("red-chair"), pose_mode="t-pose")


@pytest.fixture(scope="module")
def chair_views(tmp_path_factory: pytest.TempPathFactory) -> RunnerArtifacts:
    return text_to_image(tmp_path_factory.mktemp("chair-views"), generate_multi_view=True)


def test_red_chair_is_a_red_object_on_a_light_background(red_chair: RunnerArtifacts) -> None:
    (path,) = red_chair.images
    assert path.name == "image_0.png"
    assert mode_and_size(path) == ("RGB", (1024, 1024))
    rgb = pixels(path)
    mask = object_mask(rgb)
    assert 0.05 < mask.mean() < 0.7
    assert red_share(rgb, mask) > 0.8
    assert rgb[~mask].min() > 200  # background stays light
    # Centred with a margin: nothing touches the border.
    assert not mask[0].any() and not mask[-1].any() and not mask[:, 0].any() and not mask[:, -1].any()
    meta = red_chair.metadata
    assert meta["reference"] is True and meta["family"] == "chair"
    assert meta["pose_mode"] == "t-pose" and meta["pose_applied"] is False
    assert red_chair.mesh is None


def test_same_inputs_give_identical_bytes(red_chair: RunnerArtifacts, tmp_path: Path) -> None:
    again = text_to_image(tmp_path / "again", "A red  chair!", pose_mode="t-pose")
    assert again.images[0].read_bytes() == red_chair.images[0].read_bytes()
    other = text_to_image(tmp_path / "other", "a red chair", seed=7)
    assert other.images[0].read_bytes() != red_chair.images[0].read_bytes()


@pytest.mark.parametrize(("ratio", "size"), [("16:9", (1024, 576)), ("3:4", (768, 1024))])
def test_aspect_ratio_sets_the_canvas(tmp_path: Path, ratio: str, size: tuple[int, int]) -> None:
    artifacts = text_to_image(tmp_path, "a blue car", aspect_ratio=ratio)
    assert mode_and_size(artifacts.images[0]) == ("RGB", size)
    mask = object_mask(pixels(artifacts.images[0]))
    assert mask.mean() > 0.05
    assert not mask[0].any() and not mask[-1].any() and not mask[:, 0].any() and not mask[:, -1].any()
    assert (artifacts.metadata["width"], artifacts.metadata["height"]) == size


def test_unknown_aspect_ratio_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="aspect_ratio"):
        text_to_image(tmp_path, aspect_ratio="5:1")


def test_multi_view_is_three_side_views_of_one_object_at_one_scale(chair_views: RunnerArtifacts) -> None:
    assert [p.name for p in chair_views.images] == ["image_0.png", "image_1.png", "image_2.png"]
    assert chair_views.metadata["views"] == ["front", "right", "back"]
    masks = []
    for path in chair_views.images:
        assert mode_and_size(path) == ("RGB", (1024, 1024))
        rgb = pixels(path)
        mask = object_mask(rgb)
        assert red_share(rgb, mask) > 0.8
        masks.append(mask)
    front, right, back = masks
    iou = (front & right).sum() / (front | right).sum()
    assert iou < 0.6, "front and right views are the same picture"
    # One framing for all: the object's top and bottom rows agree (a visual hull scales views by height).
    tops, bottoms = zip(*(rows_of(m) for m in masks), strict=True)
    assert max(tops) - min(tops) <= 2 and max(bottoms) - min(bottoms) <= 2
    # Straight, nearly orthographic views: the symmetric chair seen from the back is the front mirrored.
    mirrored = np.fliplr(back)
    assert (front & mirrored).sum() / (front | mirrored).sum() > 0.95


def test_remove_background_gives_transparent_rgba(tmp_path: Path) -> None:
    artifacts = text_to_image(tmp_path, "a golden robot", remove_background=True)
    assert mode_and_size(artifacts.images[0]) == ("RGBA", (1024, 1024))
    rgba = pixels(artifacts.images[0])
    assert (rgba[[0, 0, -1, -1], [0, -1, 0, -1], 3] == 0).all()
    assert 0.03 < (rgba[..., 3] == 255).mean() < 0.7


def test_progress_runs_from_zero_to_one(tmp_path: Path) -> None:
    seen: list[float] = []
    ProceduralImageRunner().run({}, {"prompt": "a red chair", "aspect_ratio": "2:3"}, tmp_path, seen.append)
    assert seen[0] == 0.0 and seen[-1] == 1.0
    assert all(b >= a for a, b in zip(seen, seen[1:], strict=False))


# --- image-to-image ----------------------------------------------------------------------------------------------

BLUE = (30, 60, 200)


@pytest.fixture(scope="module")
def u2netp() -> Path:
    path = u2netp_path()
    if path is None:
        pytest.fail("u2netp is not installed: run `make install` (python -m inference.bundled_models)")
    return path


@pytest.fixture(scope="module")
def blue_on_white(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shaded blue ball and a blue box with a dark stripe, photographed on white."""
    image = Image.new("RGB", (480, 360), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for r in range(110, 0, -2):  # concentric discs: a highlight up and to the right
        shade = 110 - r
        draw.ellipse(
            (150 - r + shade // 3, 180 - r - shade // 3, 150 + r + shade // 3, 180 + r - shade // 3),
            fill=(20 + shade // 2, 40 + shade // 2, 140 + shade // 2),
        )
    draw.rectangle((290, 100, 420, 280), fill=BLUE)
    draw.rectangle((290, 180, 420, 200), fill=(15, 30, 110))
    path = tmp_path_factory.mktemp("input") / "blue.png"
    image.save(path)
    return path


@pytest.fixture(scope="module")
def blue_cutout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wide blue lozenge on a transparent background: needs no background-removal model."""
    image = Image.new("RGBA", (320, 240), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((20, 70, 300, 170), fill=(*BLUE, 255))
    draw.ellipse((90, 90, 150, 120), fill=(90, 120, 240, 255))  # a highlight: detail that must survive
    path = tmp_path_factory.mktemp("input") / "blue.png"
    image.save(path)
    return path


def edit(out: Path, images: list[Path], model: Path | None, prompt: str, **params) -> RunnerArtifacts:
    return ImageEditRunner(model).run({"images": images}, {"prompt": prompt, **params}, out, lambda _f: None)


def test_photo_recoloured_red_with_u2netp(tmp_path: Path, blue_on_white: Path, u2netp: Path) -> None:
    artifacts = edit(tmp_path / "a", [blue_on_white], u2netp, "make it red")
    (path,) = artifacts.images
    assert mode_and_size(path) == ("RGB", (1024, 1024))
    rgb = pixels(path)
    mask = object_mask(rgb)
    assert 0.1 < mask.mean() < 0.8
    assert red_share(rgb, mask) > 0.85
    # The background is the plain light one, untouched by the recolouring.
    border = np.concatenate([rgb[:40].reshape(-1, 3), rgb[-40:].reshape(-1, 3)])
    assert border.min() > 235 and np.ptp(border, axis=0).max() <= 2
    # Shading survives: the dark stripe and the ball's gradient keep the object's luminance spread.
    luma = rgb[..., :3] @ np.array([0.2126, 0.7152, 0.0722])
    assert np.std(luma[mask]) > 12
    assert artifacts.metadata["recolour"] == "red"
    again = edit(tmp_path / "b", [blue_on_white], u2netp, "make it red")
    assert again.images[0].read_bytes() == path.read_bytes()


def test_all_white_picture_is_rejected(tmp_path: Path, u2netp: Path) -> None:
    blank = tmp_path / "white.png"
    Image.new("RGB", (256, 256), (255, 255, 255)).save(blank)
    with pytest.raises(InputRejected, match="no object"):
        edit(tmp_path / "out", [blank], u2netp, "make it red")


def test_transparent_input_needs_no_model(tmp_path: Path, blue_cutout: Path) -> None:
    red = pixels(edit(tmp_path / "red", [blue_cutout], None, "paint it red").images[0])
    mask = object_mask(red)
    assert red_share(red, mask) > 0.9
    # Without a colour word the colours stay: still blue.
    kept = pixels(edit(tmp_path / "kept", [blue_cutout], None, "a nice studio photo").images[0])
    r, g, b = (kept[..., k][object_mask(kept)] for k in range(3))
    assert np.mean((b > r + 60) & (b > g + 40)) > 0.9
    grey = pixels(edit(tmp_path / "grey", [blue_cutout], None, "black and white").images[0])
    assert np.ptp(grey[object_mask(grey)], axis=1).max() <= 2


def test_aspect_ratio_and_transparent_output(tmp_path: Path, blue_cutout: Path) -> None:
    artifacts = edit(tmp_path, [blue_cutout, blue_cutout], None, "green", aspect_ratio="16:9", remove_background=True)
    assert mode_and_size(artifacts.images[0]) == ("RGBA", (1024, 576))
    rgba = pixels(artifacts.images[0])
    assert (rgba[[0, 0, -1, -1], [0, -1, 0, -1], 3] == 0).all()
    solid = rgba[..., 3] == 255
    r, g, b = (rgba[..., k][solid] for k in range(3))
    assert solid.mean() > 0.2 and np.mean((g > r + 30) & (g > b + 30)) > 0.9
    top, bottom = rows_of(solid)
    assert abs((top + bottom) / 2 - 576 / 2) < 3  # centred
    assert artifacts.metadata["reference_images"] == 2


def test_image_multi_view(tmp_path: Path, blue_cutout: Path) -> None:
    seen: list[float] = []
    artifacts = ImageEditRunner(None).run(
        {"images": [blue_cutout]}, {"prompt": "make it red", "generate_multi_view": True}, tmp_path, seen.append
    )
    assert len(artifacts.images) == 3
    masks = []
    for path in artifacts.images:
        assert mode_and_size(path) == ("RGB", (1024, 1024))
        rgb = pixels(path)
        masks.append(object_mask(rgb))
        assert red_share(rgb, masks[-1]) > 0.8
    front, right, _ = masks
    assert (front & right).sum() / (front | right).sum() < 0.8
    tops, bottoms = zip(*(rows_of(m) for m in masks), strict=True)
    assert max(tops) - min(tops) <= 3 and max(bottoms) - min(bottoms) <= 3
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)


def test_edit_plan_reads_the_prompt() -> None:
    assert edit_plan("make it red") == {"colour": "red", "grayscale": False, "tone": None}
    assert edit_plan("Black and white, please") == {"colour": None, "grayscale": True, "tone": None}
    assert edit_plan("a darker blue") == {"colour": "blue", "grayscale": False, "tone": "darker"}
    assert edit_plan("sharper edges") == {"colour": None, "grayscale": False, "tone": None}
