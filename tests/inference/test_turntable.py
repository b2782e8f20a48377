"""The turntable video (`preview.mp4`, `video_url`): written by the deliverables pipeline when `_turntable` is set,
read back here with PyAV's decoder as an independent check of the container, codec and pictures."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import trimesh
from PIL import Image

from inference.pipeline import deliverables as deliverables_module
from inference.pipeline import thumbnail, turntable
from inference.pipeline.clean import safe_vertex_normals
from inference.pipeline.deliverables import build_deliverables


def coloured_bar() -> trimesh.Trimesh:
    """A bar along x, red at -x through green to blue at +x, with a block on top of its blue end: turning it swaps
    which colour is on which side of the picture."""
    bar = trimesh.creation.box(extents=(2.0, 0.5, 0.5))
    block = trimesh.creation.box(extents=(0.5, 0.6, 0.5))
    block.apply_translation((0.75, 0.55, 0.0))
    mesh = trimesh.util.concatenate([bar, block])
    mesh = trimesh.Trimesh(*trimesh.remesh.subdivide_to_size(mesh.vertices, mesh.faces, max_edge=0.1), process=True)
    t = (mesh.vertices[:, 0] + 1.0) / 2.0
    rgb = np.stack([1 - t, 1 - np.abs(2 * t - 1), t], axis=1) * 255
    mesh.visual.vertex_colors = np.concatenate([rgb, np.full((len(rgb), 1), 255)], axis=1).astype(np.uint8)
    return mesh


def read_video(path: Path) -> tuple[av.video.stream.VideoStream, float, list[np.ndarray]]:
    """(stream, duration in seconds, RGB frames) through PyAV's demuxer and decoder."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        duration = float(stream.duration * stream.time_base) if stream.duration else container.duration / 1e6
        return stream, duration, frames


def background(size: int) -> np.ndarray:
    t = np.linspace(0, 1, size)[:, None, None]
    return (thumbnail.BACKGROUND_TOP * (1 - t) + thumbnail.BACKGROUND_BOTTOM * t) * 255


def object_mask(frame: np.ndarray) -> np.ndarray:
    """Pixels clearly off the background gradient (the codec's noise stays well under 20 levels)."""
    return np.abs(frame.astype(np.float32) - background(frame.shape[0])).max(axis=2) > 20


@pytest.fixture(scope="module")
def turned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, deliverables_module.Deliverables]:
    out = tmp_path_factory.mktemp("turntable")
    params = {"mode": "refine", "target_polycount": 3000, "target_formats": ["glb"], "_turntable": True}
    return out, build_deliverables(coloured_bar(), params, out)


def test_video_is_an_h264_mp4_of_one_turn(turned) -> None:
    out, result = turned
    assert result.video == "preview.mp4"
    data = (out / "preview.mp4").read_bytes()
    assert data[4:8] == b"ftyp"
    assert data.index(b"moov") < data.index(b"mdat")  # +faststart: playable before it has fully downloaded
    stream, duration, frames = read_video(out / "preview.mp4")
    assert stream.codec_context.name == "h264"
    assert stream.codec_context.pix_fmt == "yuv420p"
    assert (stream.width, stream.height) == (turntable.SIZE, turntable.SIZE)
    assert stream.average_rate == turntable.FPS
    assert len(frames) == round(turntable.FPS * turntable.SECONDS)
    assert abs(duration - turntable.SECONDS) <= 1 / turntable.FPS
    assert frames[0].shape == (turntable.SIZE, turntable.SIZE, 3)
    with av.open(str(out / "preview.mp4")) as container:
        assert not container.streams.audio
    assert "turntable" in result.timings


def test_frames_show_the_object_turning(turned, tmp_path: Path) -> None:
    out, _ = turned
    _, _, frames = read_video(out / "preview.mp4")
    first, middle = frames[0], frames[len(frames) // 2]
    for name, frame in (("first", first), ("middle", middle)):
        Image.fromarray(frame).save(tmp_path / f"turntable_{name}.png")
        mask = object_mask(frame)
        assert 0.05 <= mask.mean() <= 0.8  # the object is there, and not the whole picture
        assert not mask[0].any() and not mask[-1].any() and not mask[:, 0].any() and not mask[:, -1].any()
    # Half a turn later the red end and the blue end have swapped sides of the picture.
    assert np.abs(first.astype(np.int16) - middle.astype(np.int16)).mean() > 5

    def redness_to_the_left(frame: np.ndarray) -> float:
        mask = object_mask(frame)
        cols = np.nonzero(mask)[1]
        colour = frame[mask].astype(np.float32)
        redness = colour[:, 0] - colour[:, 2]
        return float(np.corrcoef(cols, redness)[0, 1])

    assert redness_to_the_left(first) * redness_to_the_left(middle) < 0
    assert abs(redness_to_the_left(first)) > 0.3


def test_framing_holds_still_for_the_whole_turn(turned) -> None:
    """The camera is framed once for the turn, so the floor the bar stands on stays put (a per-frame fit would pump
    the picture in and out as the bar turns between side-on and end-on)."""
    out, _ = turned
    _, _, frames = read_video(out / "preview.mp4")
    bottoms = [np.nonzero(object_mask(frame).any(axis=1))[0].max() for frame in frames[:: len(frames) // 8]]
    widths = [np.ptp(np.nonzero(object_mask(frame).any(axis=0))[0]) for frame in frames[:: len(frames) // 8]]
    assert max(widths) > 1.5 * min(widths)  # the bar does turn side-on and end-on...
    assert max(bottoms) - min(bottoms) < 0.2 * turntable.SIZE  # ...and the picture does not zoom to fit it


def test_no_video_unless_asked(tmp_path: Path) -> None:
    result = build_deliverables(coloured_bar(), {"mode": "refine", "target_polycount": 500, "target_formats": ["glb"]},
                                tmp_path)  # fmt: skip
    assert result.video is None
    assert not (tmp_path / "preview.mp4").exists()


def test_a_failed_video_leaves_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        (tmp_path / "preview.mp4").write_bytes(b"half a file")
        raise RuntimeError("no encoder")

    monkeypatch.setattr(turntable, "render_turntable", broken)
    params = {"mode": "refine", "target_polycount": 500, "target_formats": ["glb"], "_turntable": True}
    result = build_deliverables(coloured_bar(), params, tmp_path)
    assert result.video is None
    assert result.model_files == {"glb": "model.glb"}
    assert not (tmp_path / "preview.mp4").exists()


def test_large_textured_surfaces_are_decimated_first(tmp_path: Path) -> None:
    """Over `MAX_FACES` the surface is simplified before rendering; a texture is read at the original UVs."""
    sphere = trimesh.creation.icosphere(subdivisions=6)
    assert len(sphere.faces) > turntable.MAX_FACES
    v, f = np.asarray(sphere.vertices), np.asarray(sphere.faces)
    uv = np.stack([(v[:, 0] > 0).astype(float) * 0.5 + 0.25, np.full(len(v), 0.5)], axis=1)
    texture = np.zeros((4, 4, 3), dtype=np.float32)
    texture[:, :2] = (0.9, 0.1, 0.1)  # u < 0.5: red (the -x half)
    texture[:, 2:] = (0.1, 0.1, 0.9)  # u > 0.5: blue (the +x half)
    path = turntable.render_turntable(
        v, f, safe_vertex_normals(v, f), tmp_path / "ball.mp4", uv=uv, texture=texture, closed=True,
        size=64, fps=4, seconds=1.0,
    )  # fmt: skip
    _, _, frames = read_video(path)
    assert len(frames) == 4
    colour = frames[0][object_mask(frames[0])].astype(np.float32)
    assert (colour[:, 0] > colour[:, 2] + 40).mean() > 0.1  # both halves show, in their own colours
    assert (colour[:, 2] > colour[:, 0] + 40).mean() > 0.1
