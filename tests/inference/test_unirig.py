"""UniRig through its real loading and inference path, on the tiny random release (no weights fetched).

The tiny release (`tiny_unirig`) has HF VAST-AI/UniRig's layout -- `skeleton/.../model.ckpt`, `skin/.../model.ckpt`
(Lightning `state_dict` under `model.`) -- plus the repo's `configs/` YAML at toy sizes.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # these tests never use the hub

import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pygltflib  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import trimesh  # noqa: E402

from inference.runners.tiny_unirig import build_tiny_unirig, tiny_configs  # noqa: E402
from inference.runners.unirig import (  # noqa: E402
    SKELETON_CKPT,
    SKIN_CKPT,
    ModelLoadError,
    SkeletonTokenizer,
    UniRigRunner,
    _hilbert,
    _z_order,
    from_blender,
    load,
    to_blender,
)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_unirig(tmp_path_factory.mktemp("tiny-unirig"))


@pytest.fixture(scope="module")
def cpu_runner(tiny_dir: Path):
    runner = UniRigRunner(tiny_dir, device="cpu")
    yield runner
    runner.unload()


def _mesh() -> trimesh.Trimesh:
    return trimesh.creation.capsule(height=1.0, radius=0.3, count=[12, 12])


def test_tokenizer_layout_and_detokenize() -> None:
    tok = SkeletonTokenizer(tiny_configs()["tokenizer"])
    assert (tok.branch, tok.bos, tok.eos, tok.pad, tok.spring) == (256, 257, 258, 259, 260)
    assert tok.parts == {"body": 261, "hand": 262} and tok.cls_none == 263
    assert tok.classes == {"vroid": 264, "mixamo": 265, "articulationxl": 266} and tok.vocab_size == 267
    pts = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.5], [0.0, 0.0, 0.9], [0.3, 0.0, 0.5]])
    q = tok.discretize(pts)
    # root, child, grandchild, then a branch back to the second joint
    ids = [tok.bos, tok.classes["articulationxl"], *q[0], *q[1], *q[2], tok.branch, *q[1], *q[3], tok.eos]
    joints, parents, names = tok.detokenize(np.array(ids))
    assert parents.tolist() == [-1, 0, 1, 1]
    assert np.abs(joints - pts).max() <= 1.0 / 256 + 1e-6
    assert names == ["bone_0", "bone_1", "bone_2", "bone_3"]
    assert tok.eos not in tok.allowed(ids[:3]) and tok.allowed(ids[:3]) == list(range(256))
    assert tok.eos in tok.allowed(ids[:5]) and tok.branch in tok.allowed(ids[:5])
    assert np.array_equal(tok.close(np.array(ids)), ids)
    cut = tok.close(np.array(ids[:-3]))  # max_new_tokens hit mid-branch: cut after the last complete joint
    assert cut[-1] == tok.eos and len(tok.detokenize(cut)[0]) == 3


def test_space_filling_orders() -> None:
    g = torch.stack(torch.meshgrid(*(torch.arange(4),) * 3, indexing="ij"), -1).reshape(-1, 3)
    for codes in (_z_order(g, 2), _hilbert(g.clone(), 2)):
        assert sorted(codes.tolist()) == list(range(64))
    walk = g[torch.argsort(_hilbert(g.clone(), 2))]
    assert ((walk[1:] - walk[:-1]).abs().sum(-1) == 1).all()  # a Hilbert curve moves one cell per step


def test_axis_conversion_round_trip() -> None:
    v = np.random.default_rng(0).normal(size=(5, 3))
    assert np.allclose(from_blender(to_blender(v)), v)
    assert np.allclose(to_blender(np.array([[0.0, 1.0, 0.0]])), [[0.0, 0.0, 1.0]])  # glTF up -> Blender up


def test_generate_shapes_and_determinism(cpu_runner: UniRigRunner) -> None:
    mesh = _mesh()
    a = cpu_runner.generate(mesh, seed=5)
    j = len(a.joints)
    assert j >= 1 and a.joints.shape == (j, 3) and a.parents.shape == (j,) and len(a.names) == j
    assert a.parents[0] == -1 and all(0 <= p < k for k, p in enumerate(a.parents.tolist()) if k > 0)
    assert a.weights.shape == (len(mesh.vertices), j)
    assert np.isfinite(a.weights).all() and (a.weights >= 0).all()
    assert np.allclose(a.weights.sum(axis=1), 1.0, atol=1e-6)
    lo, hi = mesh.bounds  # tokens cover the [-1, 1] cube around the bbox centre, scaled by the largest half-extent
    assert (np.abs(a.joints - (lo + hi) / 2) <= (hi - lo).max() / 2 + 1e-6).all()
    b = cpu_runner.generate(mesh, seed=5)
    assert np.array_equal(a.parents, b.parents) and np.allclose(a.joints, b.joints)
    assert np.allclose(a.weights, b.weights)


def test_run_writes_skinned_glb(cpu_runner: UniRigRunner, tmp_path: Path) -> None:
    src = tmp_path / "in.glb"
    _mesh().export(src)
    seen: list[float] = []
    art = cpu_runner.run({"model": str(src), "source_format": "glb"}, {"seed": 1}, tmp_path / "out", seen.append)
    assert art.metadata["result"]["rigged_character_glb_url"] == "Character_output.glb"
    assert art.metadata["files"] == ["Character_output.glb"] and art.metadata["skeleton"] == "unirig"
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    gltf = pygltflib.GLTF2().load(str(tmp_path / "out" / "Character_output.glb"))
    assert len(gltf.skins) == 1 and len(gltf.skins[0].joints) == art.metadata["joint_count"]
    prim = gltf.meshes[0].primitives[0]
    assert prim.attributes.JOINTS_0 is not None and prim.attributes.WEIGHTS_0 is not None
    loaded = trimesh.load(tmp_path / "out" / "Character_output.glb", force="mesh")
    assert len(loaded.vertices) > 0


def test_missing_and_corrupt_checkpoints(tiny_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load(tmp_path / "nowhere", "cpu")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dir, broken)
    (broken / SKIN_CKPT).unlink()
    with pytest.raises(ModelLoadError, match="checkpoint .* is missing"):
        load(broken, "cpu")
    shutil.copy(tiny_dir / SKIN_CKPT, broken / SKIN_CKPT)
    (broken / SKELETON_CKPT).write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="unreadable or corrupt"):
        load(broken, "cpu")
    state = torch.load(tiny_dir / SKELETON_CKPT, weights_only=True)
    state["state_dict"].pop("model.output_proj.weight")
    torch.save(state, broken / SKELETON_CKPT)
    with pytest.raises(ModelLoadError, match="does not match its config"):
        load(broken, "cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_generate_on_cuda(tiny_dir: Path) -> None:
    runner = UniRigRunner(tiny_dir, device="cuda")
    try:
        rig = runner.generate(_mesh(), seed=2)
        assert rig.weights.shape[1] == len(rig.joints) and np.allclose(rig.weights.sum(axis=1), 1.0, atol=1e-5)
        assert runner.weight_bytes > 0
    finally:
        runner.unload()
