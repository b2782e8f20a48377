"""`python -m bench.characters`: rigging, animation export and text-to-motion, each against a plain baseline.

Input, made by the run: the reference character (textured, A-pose) subdivided to 30k faces, as a GLB. Each figure is
the median of 3 runs, each run in its own process (its peak RSS its own); inside a run the work is done twice and the
second (warm: pose model and embedding model loaded) is reported per stage, the first as `cold_s`.
- rig: load + render + pose + fit + weights + the rigged GLB/FBX and the walking/running clips (the whole task)
  vs  reading the GLB with trimesh and one BlazePose call on a pre-rendered front view (the irreducible part);
- animate: one library action retargeted and written as GLB + FBX  vs  writing the static mesh as GLB with trimesh;
- text-to-motion, 6 s, prime (FBX)  vs  embedding the prompt alone with the same sentence model.
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

from bench.pipeline import peak_rss_mb, run_child

CASES = ("rig", "animate", "motion")
PROMPT = "a person walks forward, then waves with both hands"


def character_glb(path: Path) -> int:
    from inference.motion.reference_character import build_character

    mesh, _ = build_character(pose="A", style="textured", faces_target=30_000)
    mesh.export(path, file_type="glb")
    return len(mesh.faces)


def _quiet(_fraction: float) -> None:
    pass


def _rig_once(source: Path, out: Path) -> dict[str, Any]:
    from inference.runners.character import AutoRigRunner

    started = time.perf_counter()
    artifacts = AutoRigRunner().run({"model": source, "source_format": "glb"}, {"height_meters": 1.75}, out, _quiet)
    total = time.perf_counter() - started
    stats = artifacts.metadata["stats"]
    stages = {key.removesuffix("_s"): stats[key] for key in ("render_s", "pose_s", "fit_s", "weights_s")}
    stages["load+export+clips"] = total - sum(stages.values())
    return {"wall_s": total, "stages": stages}


def run_ours(case: str, source: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if case == "rig":
            cold = _rig_once(source, out / "cold")
            warm = _rig_once(source, out / "warm")
            return {**warm, "cold_s": cold["wall_s"], "peak_rss_mb": peak_rss_mb()}
        from inference.runners.character import AutoRigRunner, MotionLibraryRunner

        if case == "animate":
            AutoRigRunner().run({"model": source, "source_format": "glb"}, {}, out / "rig", _quiet)
            runner, inputs = AutoRigRunner(), {"character": out / "rig" / "character.npz"}
            params: dict[str, Any] = {"action_id": 28}
        else:
            runner, inputs, params = MotionLibraryRunner(), {}, {"prompt": PROMPT, "duration": 6.0, "mode": "prime"}
        times = []
        for attempt in range(2):
            started = time.perf_counter()
            runner.run(inputs, params, out / f"run{attempt}", _quiet)
            times.append(time.perf_counter() - started)
        return {"wall_s": times[1], "cold_s": times[0], "peak_rss_mb": peak_rss_mb()}


def run_plain(case: str, source: Path) -> dict[str, Any]:
    import trimesh

    with tempfile.TemporaryDirectory() as tmp:
        if case == "rig":
            from inference.motion.pose import detect_landmarks, render_front

            mesh = trimesh.load(source, force="mesh")
            image = render_front(mesh).image
            detect_landmarks(image)  # the landmarker's one-off load, not counted
            started = time.perf_counter()
            trimesh.load(source, force="mesh")
            detect_landmarks(image)
        elif case == "animate":
            mesh = trimesh.load(source, force="mesh")
            started = time.perf_counter()
            mesh.export(Path(tmp) / "static.glb")
        else:
            from inference.motion.text_to_motion import embedding_model

            model = embedding_model()
            model.encode([PROMPT])
            started = time.perf_counter()
            model.encode([PROMPT])
        wall = time.perf_counter() - started
    return {"wall_s": wall, "peak_rss_mb": peak_rss_mb()}


def measure(repeat: int = 3) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "character.glb"
        results["faces"] = character_glb(source)
        for case in CASES:
            for kind in ("plain", "ours"):
                print(f"[bench] (r) {case}: {kind}, {repeat} runs", file=sys.stderr, flush=True)
                runs = [run_child("bench.characters", kind, case, str(source), timeout=900) for _ in range(repeat)]
                summary = {key: statistics.median(r[key] for r in runs) for key in runs[0] if key != "stages"}
                if "stages" in runs[0]:
                    summary["stages"] = {k: statistics.median(r["stages"][k] for r in runs) for k in runs[0]["stages"]}
                results[f"{case}/{kind}"] = summary
    return results


def table(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    labels = {
        "rig": (f"(r) rig a {results['faces']:,}-face character, whole task, s", "GLB read + 1 BlazePose call"),
        "animate": ("(r) animate: 1 action -> GLB + FBX, s", "static GLB export"),
        "motion": ("(r) text-to-motion 6 s, prime (FBX), s", "embedding the prompt alone"),
    }
    rows = []
    for case, (label, base) in labels.items():
        ours, plain = results[f"{case}/ours"], results[f"{case}/plain"]
        detail = f"{ours['wall_s']:.2f} (cold {ours['cold_s']:.1f}, {ours['peak_rss_mb']:.0f} MB)"
        rows.append((label, detail, f"{plain['wall_s']:.3f} ({base})", f"{ours['wall_s'] / plain['wall_s']:.1f}x"))
        for stage, seconds in ours.get("stages", {}).items():
            rows.append((f"    {case} stage: {stage}, s", f"{seconds:.3f}", "", ""))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.characters")
    parser.add_argument("--one", nargs=3, metavar=("KIND", "CASE", "SOURCE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        kind, case, source = args.one
        print(json.dumps((run_plain if kind == "plain" else run_ours)(case, Path(source))))
        return 0
    for row in table(measure()):
        print(f"{row[0]:<58} {row[1]:<34} {row[2]:<44} {row[3]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
