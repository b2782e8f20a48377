"""`python -m bench.model_ops`: the model operations on big inputs, each against the plain library call.

Inputs, made by the run: a 300k-face textured GLB (a displaced sphere, 2048² base colour + metallic-roughness +
normal maps) and a 100k-face broken mesh (holes punched, faces flipped, duplicates). Each figure is the median of 3
runs, each run in its own process so peak RSS is its own. Baselines, same run, same inputs:
- convert to OBJ+FBX+STL+USDZ+GLB  vs  trimesh.load + trimesh export of GLB/OBJ/STL;
- resize (longest side 2 m, GLB)   vs  trimesh.load + apply_scale + GLB export;
- remesh to 10k quads (textures re-baked, GLB)  vs  pynanoinstantmeshes alone at 10k on the same geometry;
- repair of the broken mesh (STL)  vs  trimesh's own repair (merge, fill_holes, fix_winding, fix_normals);
- segmentation of a 30k-face character into 8 parts (GLB, labels, per-part GLBs, preview)  vs  the naive spectral
  step alone: trimesh's face adjacency and scipy's eigsh for 8 eigenvectors of the full mesh's face-graph Laplacian.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from PIL import Image

from bench.pipeline import peak_rss_mb, run_child

CASES = ("convert", "resize", "remesh", "repair", "segment")


def textured_glb(path: Path) -> int:
    sphere = trimesh.creation.icosphere(subdivisions=7)  # 327,680 faces
    keep = sphere.faces[:300_000]
    v = sphere.vertices * (1 + 0.1 * np.sin(6 * sphere.vertices[:, :1]))
    uv = np.stack([np.arctan2(v[:, 2], v[:, 0]) / (2 * np.pi) + 0.5, v[:, 1] * 0.5 + 0.5], axis=1)
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (2048, 2048, 3), dtype=np.uint8))
    mr = Image.fromarray(np.full((2048, 2048, 3), (0, 180, 40), dtype=np.uint8))
    normal = Image.fromarray(np.full((2048, 2048, 3), (128, 128, 255), dtype=np.uint8))
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=base, metallicRoughnessTexture=mr,
                                                   normalTexture=normal)  # fmt: skip
    mesh = trimesh.Trimesh(v, keep, visual=trimesh.visual.TextureVisuals(uv=uv, material=material), process=False)
    mesh.export(path, file_type="glb")
    return len(keep)


def broken_mesh(path: Path) -> int:
    sphere = trimesh.creation.icosphere(subdivisions=6)  # 81,920 faces
    sphere = sphere.subdivide()  # 327,680
    faces = sphere.faces[:100_000].copy()
    rng = np.random.default_rng(1)
    flip = rng.choice(len(faces), 3000, replace=False)
    faces[flip] = faces[flip][:, ::-1]
    faces = np.concatenate([faces[rng.permutation(len(faces))[200:]], faces[:100]])
    trimesh.Trimesh(sphere.vertices, faces, process=False).export(path, file_type="stl")
    return len(faces)


def character_glb(path: Path) -> int:
    from inference.motion.reference_character import build_character

    mesh, _ = build_character(pose="A", style="grey", faces_target=30_000)
    mesh.export(path, file_type="glb")
    return len(mesh.faces)


def run_ours(case: str, source: Path) -> dict[str, Any]:
    from inference.pipeline import model_ops, printing, segmentation
    from inference.pipeline.model_input import load_model

    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        model = load_model(source, source.suffix.lstrip("."))
        loaded = time.perf_counter() - started
        if case == "convert":
            model_ops.convert(model, {"target_formats": ["glb", "obj", "fbx", "stl", "usdz"]}, Path(out), _quiet)
        elif case == "resize":
            model_ops.resize(model, {"resize_longest_side": 2.0, "origin_at": "bottom", "output_format": "glb"},
                             Path(out), _quiet)  # fmt: skip
        elif case == "remesh":
            model_ops.remesh(model, {"topology": "quad", "target_polycount": 10_000, "target_formats": ["glb"]},
                             Path(out), _quiet)  # fmt: skip
        elif case == "segment":
            segmentation.segment(model, {"num_parts": 8}, Path(out), _quiet)
        else:
            printing.repair(model, Path(out), _quiet)
        wall = time.perf_counter() - started
    return {"wall_s": wall, "load_s": loaded, "peak_rss_mb": peak_rss_mb()}


def run_plain(case: str, source: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        if case == "remesh":
            from inference.pipeline.quads import instant_meshes

            mesh = trimesh.load(source, force="mesh", process=False)
            instant_meshes(np.asarray(mesh.vertices), np.asarray(mesh.faces), 10_000)
        elif case == "segment":
            import scipy.sparse as sp
            from scipy.sparse.linalg import eigsh

            mesh = trimesh.load(source, force="mesh")
            pairs = mesh.face_adjacency
            n = len(mesh.faces)
            adjacency = sp.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
            adjacency = (adjacency + adjacency.T).tocsr()
            laplacian = sp.diags(np.asarray(adjacency.sum(axis=1)).ravel()) - adjacency
            eigsh(laplacian + sp.identity(n) * 1e-6, k=8, sigma=0, which="LM")
        elif case == "repair":
            mesh = trimesh.load(source, force="mesh")
            trimesh.repair.fill_holes(mesh)
            trimesh.repair.fix_winding(mesh)
            trimesh.repair.fix_normals(mesh)
            mesh.export(Path(out) / "model.stl")
        else:
            mesh = trimesh.load(source, force="mesh", process=False)
            if case == "resize":
                mesh.apply_scale(2.0 / max(mesh.extents))
                mesh.export(Path(out) / "model.glb")
            else:
                for fmt in ("glb", "obj", "stl"):
                    mesh.export(Path(out) / f"model.{fmt}")
        wall = time.perf_counter() - started
    return {"wall_s": wall, "peak_rss_mb": peak_rss_mb()}


def _quiet(_fraction: float) -> None:
    pass


def measure(repeat: int = 3) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        glb, stl, figure = Path(tmp) / "textured.glb", Path(tmp) / "broken.stl", Path(tmp) / "character.glb"
        results["textured_faces"], results["broken_faces"] = textured_glb(glb), broken_mesh(stl)
        results["character_faces"] = character_glb(figure)
        for case in CASES:
            source = {"repair": stl, "segment": figure}.get(case, glb)
            for kind in ("plain", "ours"):
                print(f"[bench] (m) {case}: {kind}, {repeat} runs", file=sys.stderr, flush=True)
                runs = [run_child("bench.model_ops", kind, case, str(source), timeout=900) for _ in range(repeat)]
                results[f"{case}/{kind}"] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    return results


def table(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    labels = {
        "convert": ("(m) convert 300k textured GLB -> 5 formats, s", "trimesh load + glb/obj/stl export"),
        "resize": ("(m) resize 300k textured GLB -> GLB, s", "trimesh load + scale + glb export"),
        "remesh": ("(m) remesh 300k textured GLB -> 10k quads, re-baked, s", "instant meshes alone"),
        "repair": (f"(m) repair {results['broken_faces']:,}-face broken mesh, s", "trimesh fill/fix"),
        "segment": (
            f"(m) segment a {results['character_faces']:,}-face character into 8 parts, s",
            "face-graph Laplacian + eigsh(8) alone",
        ),
    }
    rows = []
    for case, (label, base) in labels.items():
        ours, plain = results[f"{case}/ours"], results[f"{case}/plain"]
        rows.append((label, f"{ours['wall_s']:.2f} ({ours['peak_rss_mb']:.0f} MB)",
                     f"{plain['wall_s']:.2f} ({plain['peak_rss_mb']:.0f} MB, {base})",
                     f"{ours['wall_s'] / plain['wall_s']:.2f}x"))  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.model_ops")
    parser.add_argument("--one", nargs=3, metavar=("KIND", "CASE", "SOURCE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        kind, case, source = args.one
        print(json.dumps((run_plain if kind == "plain" else run_ours)(case, Path(source))))
        return 0
    for row in table(measure()):
        print(f"{row[0]:<58} {row[1]:<22} {row[2]:<52} {row[3]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
