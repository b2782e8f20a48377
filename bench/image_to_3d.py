"""`python -m bench.image_to_3d`: a 1024x1024 photo-like picture to every image-to-3d deliverable, per stage.

The CPU reference path as the worker runs it: u2netp cut-out, silhouette inflation, colouring from the photo (the
image-inflate runner), then the mesh pipeline (remesh to 30k, unwrap, bake PBR maps, GLB/OBJ/FBX/STL/USDZ,
thumbnails). Each figure is the median of 3 runs, each run in its own process so peak RSS is its own. The baseline,
measured in the same run and process kind: the u2netp model alone on the same picture (one onnxruntime call with
rembg's pre/post-processing), i.e. the cost of the one learned step, against which the rest is overhead. The
person-facing target is under 10 s for the whole path.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.pipeline import median_run, peak_rss_mb, run_child

SIZE = 1024
TARGET_S = 10.0


def photo(path: Path) -> None:
    """A photo-like JPEG: the procedural runner's painted 'red wooden chair' lit and rendered at 1024x1024 over a
    textured, noisy floor-and-wall background, with sensor noise."""
    import trimesh

    from inference.pipeline.thumbnail import render
    from inference.runners.procedural import ProceduralRunner, prompt_words
    from inference.runners.procedural_paint import paint

    with tempfile.TemporaryDirectory() as tmp:
        art = ProceduralRunner().run({}, {"mode": "preview", "prompt": "a wooden chair", "seed": 7}, Path(tmp),
                                     lambda _f: None)  # fmt: skip
        mesh = trimesh.load(art.mesh, force="mesh", process=False)
    colours, _ = paint(mesh.vertices, prompt_words("red wooden"), 7)
    rgb, alpha = render(mesh.vertices, mesh.faces, mesh.vertex_normals, colors=colours / 255.0, size=SIZE)
    rng = np.random.default_rng(0)
    rows = np.linspace(0, 1, SIZE)[:, None, None]
    wall = np.array([0.72, 0.70, 0.66]) * (1 - 0.2 * rows)
    floor = np.array([0.55, 0.47, 0.38]) * (0.8 + 0.2 * rows)
    background = np.where(rows > 0.7, floor, wall) + 0.03 * np.sin(np.arange(SIZE) / 7.0)[None, :, None]
    picture = rgb + background * (1 - alpha[..., None]) + rng.normal(0, 0.015, (SIZE, SIZE, 3))
    Image.fromarray(np.clip(picture * 255, 0, 255).astype(np.uint8)).save(path, quality=92)


def run_ours(picture: Path) -> dict[str, Any]:
    from inference.bundled_models import u2netp_path
    from inference.pipeline.deliverables import build_deliverables
    from inference.runners.image_inflate import ImageInflateRunner

    params = {"should_texture": True, "enable_pbr": True, "should_remesh": True, "target_polycount": 30_000,
              "target_formats": ["glb", "obj", "fbx", "stl", "usdz"], "multi_view_thumbnails": True}  # fmt: skip
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        runner = ImageInflateRunner(u2netp_path())
        artifacts = runner.run({"images": [picture]}, params, Path(out), lambda _f: None)
        runner_s = time.perf_counter() - started
        t = time.perf_counter()
        result = build_deliverables(artifacts.mesh, params, Path(out))
        pipeline_s = time.perf_counter() - t
        wall = time.perf_counter() - started
    stages = {**artifacts.metadata["timings_s"], "pipeline": pipeline_s, "runner": runner_s}
    return {"wall_s": wall, "stages": stages, "pipeline_stages": result.timings, "faces": result.faces,
            "raw_faces": artifacts.metadata["faces"], "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def run_plain(picture: Path) -> dict[str, Any]:
    """u2netp alone: the same model call the cut-out makes, with nothing around it."""
    from inference.bundled_models import u2netp_path
    from inference.runners.cutout import Cutout

    rgb = np.asarray(Image.open(picture).convert("RGB"))
    cutout = Cutout(u2netp_path())
    cutout.mask(rgb[:64, :64])  # open the session outside the timing, as a worker keeps it open
    started = time.perf_counter()
    cutout.mask(rgb)
    wall = time.perf_counter() - started
    return {"wall_s": wall, "stages": {}, "peak_rss_mb": peak_rss_mb()}


def measure(repeat: int = 3) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        picture = Path(tmp) / "photo.jpg"
        photo(picture)
        results: dict[str, Any] = {"size": SIZE}
        for kind in ("plain", "ours"):
            print(f"[bench] (i) image-to-3d: {kind}, {repeat} runs", file=sys.stderr, flush=True)
            results[kind] = median_run([run_child("bench.image_to_3d", kind, str(picture)) for _ in range(repeat)])
    return results


def table(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    ours, plain = results["ours"], results["plain"]
    s = ours["stages"]
    return [
        (f"(i) {SIZE}x{SIZE} photo -> all image-to-3d deliverables, s", f"{ours['wall_s']:.2f}",
         f"{plain['wall_s']:.2f} (u2netp call alone)", f"{ours['wall_s'] / plain['wall_s']:.1f}x"),
        ("(i) stages: cutout / inflate / colour / pipeline, s",
         f"{s['cutout']:.2f} / {s['inflate']:.2f} / {s['colour']:.2f} / {s['pipeline']:.2f}",
         f"target < {TARGET_S:.0f} s in all", f"{ours['wall_s'] / TARGET_S:.2f} of target"),
        ("(i) peak RSS MB", f"{ours['peak_rss_mb']:.0f}", f"{plain['peak_rss_mb']:.0f} (u2netp alone)",
         f"{ours['peak_rss_mb'] / plain['peak_rss_mb']:.2f}x"),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.image_to_3d")
    parser.add_argument("--one", nargs=2, metavar=("KIND", "PICTURE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        kind, picture = args.one
        print(json.dumps(run_plain(Path(picture)) if kind == "plain" else run_ours(Path(picture))))
        return 0
    results = measure()
    for row in table(results):
        print(f"{row[0]:<58} {row[1]:<30} {row[2]:<36} {row[3]}")
    print(json.dumps(results["ours"]["pipeline_stages"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
