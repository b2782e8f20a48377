"""`python -m bench.pipeline`: a ~300k-face raw mesh to every deliverable at 30k faces, per stage, against plain calls.

Each figure is the median of 3 runs.

Each path runs in its own process so peak RSS is its own. The baseline is the same libraries called plainly, in the
same run: fast_simplification to 30k, xatlas with default options, trimesh's GLB/OBJ/STL export.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

TARGET = 30_000
FORMATS = ["glb", "obj", "fbx", "stl", "usdz"]


def raw_mesh(path: Path) -> int:
    """A displaced, coloured icosphere: 327,680 faces, watertight, with Shap-E-like density."""
    sphere = trimesh.creation.icosphere(subdivisions=7)
    v = sphere.vertices
    bumps = 0.15 * np.sin(5 * v[:, 0]) * np.cos(4 * v[:, 1]) + 0.08 * np.sin(9 * v[:, 2] + 1.0)
    v = v * (1.0 + bumps)[:, None]
    colours = np.clip(128 + 120 * np.stack([np.sin(3 * v[:, 0]), np.cos(2 * v[:, 1]), np.sin(v[:, 2])], 1), 0, 255)
    rgba = np.concatenate([colours, np.full((len(v), 1), 255)], axis=1).astype(np.uint8)
    trimesh.Trimesh(v, sphere.faces, vertex_colors=rgba, process=False).export(path)
    return len(sphere.faces)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ours(raw: Path, topology: str) -> dict[str, Any]:
    from inference.pipeline.deliverables import build_deliverables

    params = {"mode": "refine", "should_remesh": True, "target_polycount": TARGET, "topology": topology,
              "target_formats": FORMATS, "enable_pbr": True}  # fmt: skip
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        result = build_deliverables(raw, params, Path(out))
        wall = time.perf_counter() - started
    return {"wall_s": wall, "stages": result.timings, "faces": result.faces, "peak_rss_mb": peak_rss_mb(),
            "files": sorted(result.model_files)}  # fmt: skip


def run_plain(raw: Path) -> dict[str, Any]:
    import fast_simplification
    import xatlas
    from PIL import Image

    stages: dict[str, float] = {}
    started = time.perf_counter()
    t = time.perf_counter()
    mesh = trimesh.load(raw, force="mesh", process=False)
    stages["load"] = time.perf_counter() - t
    t = time.perf_counter()
    v, f = fast_simplification.simplify(mesh.vertices, mesh.faces, target_count=TARGET)
    stages["remesh"] = time.perf_counter() - t
    t = time.perf_counter()
    vmap, faces, uv = xatlas.parametrize(v, f)
    stages["unwrap"] = time.perf_counter() - t
    texture = Image.new("RGB", (1024, 1024), (180, 160, 140))
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=texture)
    out_mesh = trimesh.Trimesh(v[vmap], faces, visual=trimesh.visual.TextureVisuals(uv=uv, material=material))
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        out_mesh.export(Path(out) / "model.glb", include_normals=True)
        stages["glb"] = time.perf_counter() - t
        t = time.perf_counter()
        out_mesh.export(Path(out) / "model.obj")
        stages["obj"] = time.perf_counter() - t
        t = time.perf_counter()
        out_mesh.export(Path(out) / "model.stl")
        stages["stl"] = time.perf_counter() - t
    return {"wall_s": time.perf_counter() - started, "stages": stages, "faces": len(faces),
            "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def run_child(module: str, *args: str, timeout: float = 600) -> dict[str, Any]:
    """`python -m <module> --one <args>` in its own process (so its peak RSS is its own); its last line's JSON."""
    out = subprocess.run([sys.executable, "-m", module, "--one", *args], capture_output=True, text=True, check=True,
                         timeout=timeout)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def _child(kind: str, raw: Path) -> dict[str, Any]:
    return run_child("bench.pipeline", kind, str(raw))


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-figure medians over repeated runs: single runs on a shared 2-core machine are too noisy to compare."""
    stages = {key: statistics.median(r["stages"][key] for r in runs) for key in runs[0]["stages"]}
    return {**runs[0], "stages": stages, "runs": len(runs),
            **{key: statistics.median(r[key] for r in runs) for key in ("wall_s", "peak_rss_mb")}}  # fmt: skip


def measure(repeat: int = 3) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.ply"
        faces = raw_mesh(raw)
        results: dict[str, Any] = {"raw_faces": faces, "target": TARGET}
        for kind in ("plain", "triangle", "quad"):
            print(f"[bench] (p) pipeline: {kind} path, {repeat} runs", file=sys.stderr, flush=True)
            # Interleaving would be fairer still; sequential medians keep each child's RSS its own.
            results[kind] = median_run([_child(kind, raw) for _ in range(repeat)])
    return results


def table(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, ours, baseline, ratio) rows."""
    plain, tri, quad = results["plain"], results["triangle"], results["quad"]
    rows = [
        (f"(p) {results['raw_faces']:,} faces -> all deliverables, triangle, s", f"{tri['wall_s']:.2f}",
         f"{plain['wall_s']:.2f} (plain: decimate+xatlas+glb/obj/stl)", f"{tri['wall_s'] / plain['wall_s']:.2f}x"),
        ("(p) same, quad topology, s", f"{quad['wall_s']:.2f}", f"{tri['wall_s']:.2f} (triangle path)",
         f"{quad['wall_s'] / tri['wall_s']:.2f}x"),
        ("(p) peak RSS triangle / quad MB", f"{tri['peak_rss_mb']:.0f} / {quad['peak_rss_mb']:.0f}",
         f"{plain['peak_rss_mb']:.0f} (plain)", f"{tri['peak_rss_mb'] / plain['peak_rss_mb']:.2f}x"),
    ]  # fmt: skip
    for stage, plain_stage in (("remesh", "remesh"), ("unwrap", "unwrap"), ("glb", "glb"), ("obj", "obj")):
        ours = tri["stages"].get(stage)
        base = plain["stages"].get(plain_stage)
        if ours is not None and base:
            rows.append((f"(p) stage {stage} s", f"{ours:.3f}", f"{base:.3f} (plain call)", f"{ours / base:.2f}x"))
    others = {k: v for k, v in tri["stages"].items() if k not in ("remesh", "unwrap", "glb", "obj", "total")}
    rows.append(("(p) other stages (triangle) s", ", ".join(f"{k} {v:.2f}" for k, v in others.items()), "-", "-"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline")
    parser.add_argument("--one", nargs=2, metavar=("KIND", "RAW"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        kind, raw = args.one
        result = run_plain(Path(raw)) if kind == "plain" else run_ours(Path(raw), kind)
        print(json.dumps(result))
        return 0
    results = measure()
    for row in table(results):
        print(f"{row[0]:<58} {row[1]:<26} {row[2]:<44} {row[3]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
