"""PartField through its real loading and inference path, on the tiny random checkpoint (no weights fetched).

The tiny checkpoint (`tiny_partfield`) has the release's layout -- `model/model_objaverse.ckpt`, a Lightning-style
dict whose `state_dict` holds every tensor upstream's LightningModule has and whose `hyper_parameters["cfg"]` is a
yacs CfgNode -- at toy widths. The features are random, so the tests check the contract, not part quality.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from inference.runners.partfield import (
    CKPT_NAME,
    ModelLoadError,
    PartFieldRunner,
    _cut_tree,
    _plain,
    _safe_pickle,
    face_adjacency,
    load,
    normalize_mesh,
)
from inference.runners.tiny_partfield import build_tiny_partfield

POINTS = 8000


class Progress:
    def __init__(self) -> None:
        self.values: list[float] = []

    def __call__(self, fraction: float) -> None:
        self.values.append(fraction)


def table() -> trimesh.Trimesh:
    """A table top and four legs: five components, about 800 faces."""
    top = trimesh.creation.box((1.0, 0.1, 1.0)).apply_translation((0, 0.5, 0))
    turn = trimesh.transformations.rotation_matrix(np.pi / 2, (1, 0, 0))
    legs = [
        trimesh.creation.cylinder(0.05, 1.0, sections=12).apply_transform(turn).apply_translation((x, 0, z))
        for x in (-0.4, 0.4)
        for z in (-0.4, 0.4)
    ]
    return trimesh.util.concatenate([top, *legs]).subdivide()


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_partfield(tmp_path_factory.mktemp("tiny-partfield"))


@pytest.fixture(scope="module")
def cpu_runner(tiny_dir: Path):
    runner = PartFieldRunner(tiny_dir, device="cpu", num_points=POINTS)
    yield runner
    runner.unload()


@pytest.fixture(scope="module")
def table_glb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("table") / "table.glb"
    path.write_bytes(table().export(file_type="glb"))
    return path


def test_run_writes_one_node_per_part_and_the_labels(cpu_runner: PartFieldRunner, table_glb: Path, tmp_path: Path):
    progress = Progress()
    result = cpu_runner.run(
        {"model": table_glb, "source_format": "glb"}, {"num_parts": 4, "seed": 3}, tmp_path, progress
    )
    labels = np.asarray(result.metadata["labels"])
    faces = len(table().faces)
    assert labels.shape == (faces,) and labels.dtype.kind == "i"
    assert sorted(set(labels.tolist())) == [0, 1, 2, 3]
    assert result.metadata["num_parts"] == 4 and result.metadata["feature_dim"] == 8  # 72 - 64 SDF channels
    written = result.metadata["result"]
    assert written.model_files == {"glb": "segmented.glb"} and written.extra["parts"]["num_parts"] == 4
    assert (tmp_path / "part_labels.json").is_file() and len(written.extra["parts"]["files"]) == 4
    stored = json.loads((tmp_path / "part_labels.json").read_text())
    assert stored["num_parts"] == 4 and stored["face_labels"] == labels.tolist()
    scene = trimesh.load(tmp_path / "segmented.glb", force="scene")
    assert sorted(scene.graph.nodes_geometry) == [f"part_{i:02d}" for i in range(4)]
    assert sum(len(g.faces) for g in scene.geometry.values()) == faces
    assert np.bincount(labels).tolist() == [len(scene.geometry[f"part_{i:02d}"].faces) for i in range(4)]
    assert progress.values[0] == 0.0 and progress.values[-1] == 1.0
    assert progress.values == sorted(progress.values)


def test_features_are_deterministic_per_seed(cpu_runner: PartFieldRunner):
    mesh = table()
    cpu_runner.load()
    model = cpu_runner._model
    assert model is not None
    v = normalize_mesh(mesh.vertices)
    assert np.abs(v).max() == pytest.approx(0.9, abs=1e-6)
    a = model.face_features(v, mesh.faces, POINTS, 10, seed=1)
    b = model.face_features(v, mesh.faces, POINTS, 10, seed=1)
    c = model.face_features(v, mesh.faces, POINTS, 10, seed=2)
    assert a.shape == (len(mesh.faces), 8) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-6


def test_auto_part_count_and_kmeans(cpu_runner: PartFieldRunner):
    mesh = table()
    auto = cpu_runner.segment(mesh, None, seed=0)
    assert 2 <= auto.num_parts <= 12 and sorted(set(auto.labels.tolist())) == list(range(auto.num_parts))
    km = cpu_runner.segment(mesh, 3, seed=0, clustering="kmeans")
    assert sorted(set(km.labels.tolist())) == [0, 1, 2]


def test_adjacency_and_tree_cut_match_upstream_semantics():
    from scipy.sparse.csgraph import connected_components
    from sklearn.cluster import AgglomerativeClustering

    mesh = table()
    adj = face_adjacency(mesh.faces, mesh.vertices)
    assert connected_components(adj, directed=False)[0] == 1  # five pieces chained into one graph
    assert (adj != adj.T).nnz == 0
    feat = np.random.default_rng(0).normal(size=(len(mesh.faces), 6))
    tree = AgglomerativeClustering(connectivity=adj, n_clusters=1).fit(feat)
    for k in (2, 5, 9):
        ours = _cut_tree(tree.children_, len(feat), k)
        ref = AgglomerativeClustering(connectivity=adj, n_clusters=k).fit(feat).labels_
        # the same partition, whatever the label numbers
        assert len(set(zip(ours.tolist(), ref.tolist(), strict=True))) == k == len(set(ours.tolist()))


def _read_raw(path: Path) -> dict:
    """The tiny checkpoint with its cfg as plain dicts (re-saving our CfgNode stand-in would need allow_pickle)."""
    raw = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_safe_pickle)
    raw["hyper_parameters"] = {"cfg": _plain(raw["hyper_parameters"]["cfg"])}
    return raw


def _copy(tiny_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(tiny_dir, dst)
    return dst


def test_missing_model_dir_or_checkpoint_raises_model_load_error(tiny_dir: Path, tmp_path: Path):
    with pytest.raises(ModelLoadError, match="no PartField checkpoint"):
        load(tmp_path / "nothing", "cpu")
    broken = _copy(tiny_dir, tmp_path)
    (broken / "model" / CKPT_NAME).unlink()
    with pytest.raises(ModelLoadError, match="no PartField checkpoint"):
        PartFieldRunner(broken, device="cpu").load()


def test_corrupt_checkpoint_raises_model_load_error(tiny_dir: Path, tmp_path: Path):
    broken = _copy(tiny_dir, tmp_path)
    ckpt = broken / "model" / CKPT_NAME
    ckpt.write_bytes(ckpt.read_bytes()[:4000])  # truncated download
    with pytest.raises(ModelLoadError, match="unreadable or corrupt"):
        load(broken, "cpu")
    ckpt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelLoadError, match="unreadable or corrupt"):
        load(broken, "cpu")


def test_incomplete_or_mismatched_checkpoint_is_refused(tiny_dir: Path, tmp_path: Path):
    src = _read_raw(tiny_dir / "model" / CKPT_NAME)
    broken = tmp_path / "ckpt"
    (broken / "model").mkdir(parents=True)
    lacking = {**src, "state_dict": {k: v for k, v in src["state_dict"].items() if not k.startswith("pvcnn.unet")}}
    torch.save(lacking, broken / "model" / CKPT_NAME)
    with pytest.raises(ModelLoadError, match="lacks .* PartField tensors"):
        load(broken, "cpu")
    cfg = _plain(src["hyper_parameters"]["cfg"])
    cfg["triplane_channels_low"] = 16  # the encoder would expect 32 input channels
    torch.save({**src, "hyper_parameters": {"cfg": cfg}}, broken / "model" / CKPT_NAME)
    with pytest.raises(ModelLoadError, match="does not match its config"):
        load(broken, "cpu")


class _Evil:
    def __reduce__(self):  # would run a command if the checkpoint were unpickled blindly
        return (print, ("pwned",))


def test_checkpoint_with_foreign_objects_needs_allow_pickle(tiny_dir: Path, tmp_path: Path):
    src = _read_raw(tiny_dir / "model" / CKPT_NAME)
    (tmp_path / "model").mkdir()
    torch.save({**src, "callbacks": {"x": _Evil()}}, tmp_path / "model" / CKPT_NAME, pickle_protocol=2)
    with pytest.raises(ModelLoadError, match="allow_pickle=True"):
        load(tmp_path, "cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_segmentation_on_cuda(tiny_dir: Path):
    runner = PartFieldRunner(tiny_dir, device="cuda", num_points=20_000)
    cpu = PartFieldRunner(tiny_dir, device="cpu", num_points=20_000)
    try:
        mesh = table()
        first = runner.segment(mesh, 4, seed=0)
        again = runner.segment(mesh, 4, seed=0)
        ref = cpu.segment(mesh, 4, seed=0)
        assert runner.weight_bytes > 0
    finally:
        runner.unload()
        cpu.unload()
    np.testing.assert_array_equal(first.labels, again.labels)
    assert first.features.shape == ref.features.shape
    # float16 autocast on CUDA vs float32 on the CPU: close features
    cos = (first.features * ref.features).sum(1) / (
        np.linalg.norm(first.features, axis=1) * np.linalg.norm(ref.features, axis=1) + 1e-12
    )
    assert np.median(cos) > 0.99
