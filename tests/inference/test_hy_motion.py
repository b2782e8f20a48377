"""HY-Motion through its real loading and sampling path, on the tiny random download (no weights fetched).

The tiny download (`tiny_hy_motion`) has upstream's layout -- `HY-Motion-1.0/config.yml` + `latest.ckpt`,
`Qwen3-8B/`, `clip-vit-large-patch14/` -- at toy widths, with four Euler steps and CFG as config.yml sets them.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # set before huggingface_hub reads it: these tests never use the hub

import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402

from inference.motion.skeleton import BONE_COUNT, CANONICAL, INDEX, PRIMARY_CHILD, Clip, world_pose  # noqa: E402
from inference.runners.hy_motion import (  # noqa: E402
    BONE_TO_SMPL,
    CKPT_NAME,
    CONFIG_NAME,
    SMPL_PARENTS,
    SMPL_REST,
    HYMotionRunner,
    ModelLoadError,
    load,
    smpl_to_clip,
)
from inference.runners.tiny_hy_motion import VARIANT, build_tiny_hy_motion  # noqa: E402

PARAMS = {"prompt": "a person walks forward and waves", "duration": 2.0, "seed": 7}


class Progress:
    def __init__(self) -> None:
        self.values: list[float] = []

    def __call__(self, fraction: float) -> None:
        self.values.append(fraction)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_hy_motion(tmp_path_factory.mktemp("tiny-hy-motion"))


@pytest.fixture(scope="module")
def cpu_runner(tiny_dir: Path):
    runner = HYMotionRunner(tiny_dir, device="cpu")
    yield runner
    runner.unload()


def _check_clip(clip: Clip, frames: int) -> None:
    assert clip.rotations.shape == (frames, BONE_COUNT, 4)
    assert clip.root.shape == (frames, 3)
    assert clip.fps == 30.0
    assert np.isfinite(clip.rotations).all() and np.isfinite(clip.root).all()
    np.testing.assert_allclose(np.linalg.norm(clip.rotations, axis=-1), 1.0, atol=1e-6)
    _, positions = world_pose(CANONICAL, clip.rotations, clip.root)
    assert positions[..., 1].min() == pytest.approx(CANONICAL.positions[:, 1].min(), abs=1e-9)  # grounded


def test_two_second_clip_through_the_real_loader(cpu_runner: HYMotionRunner):
    clip = cpu_runner.generate(PARAMS["prompt"], 2.0, seed=7)
    _check_clip(clip, 60)  # round(2 s * 30 fps), as upstream sizes it
    # toe ends follow the toes: no rotation of their own
    for side in ("Left", "Right"):
        np.testing.assert_allclose(np.abs(clip.rotations[:, INDEX[f"{side}Toe_End"], 3]), 1.0, atol=1e-9)


def test_same_seed_same_clip_other_seed_or_prompt_differs(cpu_runner: HYMotionRunner):
    a = cpu_runner.generate(PARAMS["prompt"], 2.0, seed=7)
    b = cpu_runner.generate(PARAMS["prompt"], 2.0, seed=7)
    c = cpu_runner.generate(PARAMS["prompt"], 2.0, seed=8)
    d = cpu_runner.generate("a person jumps", 2.0, seed=7)
    np.testing.assert_array_equal(a.rotations, b.rotations)
    np.testing.assert_array_equal(a.root, b.root)
    assert np.abs(a.rotations - c.rotations).max() > 1e-3
    assert np.abs(a.rotations - d.rotations).max() > 1e-3


def test_run_writes_the_clip_and_reports_progress(cpu_runner: HYMotionRunner, tmp_path: Path):
    progress = Progress()
    result = cpu_runner.run({}, {**PARAMS, "mode": "swift"}, tmp_path, progress)
    assert result.metadata["files"] == ["motion.bvh", "motion.npz"]
    assert result.metadata["result"]["motion_format"] == "bvh"
    data = np.load(tmp_path / "motion.npz")
    assert data["rotations"].shape == (60, BONE_COUNT, 4) and data["root"].shape == (60, 3)
    assert float(data["fps"]) == 30.0
    assert (tmp_path / "motion.bvh").read_text().startswith("HIERARCHY")
    assert result.metadata["frames"] == 60 and result.metadata["steps"] == 4
    assert result.metadata["guidance_scale"] == 5.0
    assert progress.values[0] == 0.0 and progress.values[-1] == 1.0
    assert progress.values == sorted(progress.values)


def test_blank_prompt_is_rejected_before_loading(tiny_dir: Path, tmp_path: Path):
    runner = HYMotionRunner(tiny_dir, device="cpu")
    with pytest.raises(ValueError, match="prompt"):
        runner.run({}, {"prompt": "  ", "duration": 2}, tmp_path, Progress())
    assert not runner.loaded


def _copy(tiny_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(tiny_dir, dst)
    return dst


def test_missing_model_dir_or_checkpoint_raises_model_load_error(tiny_dir: Path, tmp_path: Path):
    with pytest.raises(ModelLoadError, match="no HY-Motion checkpoint"):
        load(tmp_path / "nothing", "cpu")
    broken = _copy(tiny_dir, tmp_path)
    (broken / VARIANT / CKPT_NAME).unlink()
    with pytest.raises(ModelLoadError, match="checkpoint .* is missing"):
        HYMotionRunner(broken, device="cpu").load()


def test_corrupt_checkpoint_raises_model_load_error(tiny_dir: Path, tmp_path: Path):
    broken = _copy(tiny_dir, tmp_path)
    ckpt = broken / VARIANT / CKPT_NAME
    ckpt.write_bytes(ckpt.read_bytes()[:2000])  # truncated download
    with pytest.raises(ModelLoadError, match="unreadable or corrupt"):
        load(broken, "cpu")
    ckpt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelLoadError, match="unreadable or corrupt"):
        load(broken, "cpu")


def test_checkpoint_that_does_not_match_its_config_is_refused(tiny_dir: Path, tmp_path: Path):
    broken = _copy(tiny_dir, tmp_path)
    cfg_path = broken / VARIANT / CONFIG_NAME
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["network_module_args"]["feat_dim"] = 48
    cfg_path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ModelLoadError, match="does not match config.yml"):
        load(broken, "cpu")
    shutil.rmtree(broken / "Qwen3-8B")
    cfg["network_module_args"]["feat_dim"] = 32
    cfg_path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ModelLoadError, match="Qwen3-8B"):
        load(broken, "cpu")


def test_retarget_keeps_every_bone_on_its_smpl_bone():
    rng = np.random.default_rng(0)
    frames = 5
    rotmats = Rotation.from_rotvec(rng.normal(0, 0.6, (frames * 22, 3))).as_matrix().reshape(frames, 22, 3, 3)
    clip = smpl_to_clip(rotmats, rng.normal(0, 0.1, (frames, 3)))
    # SMPL forward kinematics on the wooden rest skeleton
    world = [None] * 22
    pos = np.zeros((frames, 22, 3))
    for j in range(22):
        p = SMPL_PARENTS[j]
        local = Rotation.from_matrix(rotmats[:, j])
        world[j] = local if p < 0 else world[p] * local
        pos[:, j] = 0 if p < 0 else pos[:, p] + world[p].apply(np.tile(SMPL_REST[j] - SMPL_REST[p], (frames, 1)))
    _, ours = world_pose(CANONICAL, clip.rotations, clip.root)
    checked = 0
    for bone, j in BONE_TO_SMPL.items():
        child = PRIMARY_CHILD[INDEX[bone]]
        child_name = next((n for n, i in INDEX.items() if i == child), None)
        if child < 0 or child_name not in BONE_TO_SMPL:
            continue
        d_ours = ours[:, child] - ours[:, INDEX[bone]]
        d_smpl = pos[:, BONE_TO_SMPL[child_name]] - pos[:, j]
        cos = (d_ours * d_smpl).sum(-1) / np.linalg.norm(d_ours, axis=-1) / np.linalg.norm(d_smpl, axis=-1)
        np.testing.assert_allclose(cos, 1.0, atol=1e-9, err_msg=bone)
        checked += 1
    assert checked == 17
    # identity SMPL locals (the wooden T-pose) give a near-rest pose: only small rest corrections
    rest = smpl_to_clip(np.tile(np.eye(3), (1, 22, 1, 1)), np.zeros((1, 3)))
    angles = 2 * np.degrees(np.arccos(np.clip(np.abs(rest.rotations[0, :, 3]), 0, 1)))
    assert angles.max() < 35.0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_clip_on_cuda(tiny_dir: Path):
    runner = HYMotionRunner(tiny_dir, device="cuda")
    try:
        first = runner.generate(PARAMS["prompt"], 2.0, seed=7)
        again = runner.generate(PARAMS["prompt"], 2.0, seed=7)
        assert runner.weight_bytes > 0
    finally:
        runner.unload()
    _check_clip(first, 60)
    np.testing.assert_allclose(first.rotations, again.rotations, atol=1e-6)
