"""Procedural reference runner: a deterministic CPU generator, NOT an AI model.

It exists so the whole service (queue, progress, pipeline, deliverables, billing) can run and be tested
without GPU weights. Preview builds a signed-distance field from primitives (spheres, boxes, capsules,
cones, tori, cylinders) chosen and placed by a seeded generator derived from the prompt words and seed,
with a few prompt words selecting a fitting template (chair, car, tree, house, robot, mushroom, sword,
cup/mug, creature...), and polygonises it with marching cubes into a watertight mesh. Refine paints the
preview mesh with vertex colours from a palette named by the texture prompt, or projects a texture image.
The same inputs always give byte-identical output.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

from inference.runners import procedural_paint, procedural_shapes
from inference.runners.base import ProgressCallback, RunnerArtifacts
from inference.runners.sdf import polygonise

PREVIEW_GREY = (180, 180, 180, 255)
# Marching-cubes resolution (cells along the longest side) is adapted once so meshes land in this range.
FACE_RANGE = (20_000, 60_000)
FACE_TARGET = 36_000
BASE_RESOLUTION = 88


def prompt_words(text: str | None) -> list[str]:
    """Lower-case alphanumeric words; punctuation and case do not change the result."""
    return re.findall(r"[a-z0-9]+", (text or "").lower())


def seeded_rng(words: list[str], seed: int, salt: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{salt}|{seed}|{' '.join(words)}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


class Steps:
    """Reports `total` evenly spaced progress steps, sleeping before each to mimic a slow model."""

    def __init__(self, progress: ProgressCallback, delay: float, total: int = 10) -> None:
        self._progress, self._delay, self._total, self._done = progress, delay, total, 0
        progress(0.0)

    def step(self, until: int | None = None) -> None:
        target = self._total if until is None else min(until, self._total)
        while self._done < target:
            if self._delay > 0:
                time.sleep(self._delay)
            self._done += 1
            self._progress(self._done / self._total)


class ProceduralRunner:
    """Runner protocol implementation; see the module docstring. `step_delay_s` slows each of 10 steps."""

    name = "procedural"

    def __init__(self, step_delay_s: float = 0.0) -> None:
        self.step_delay_s = float(step_delay_s)

    def run(
        self,
        inputs: Mapping[str, Any],
        params: Mapping[str, Any],
        out_dir: Path,
        progress: ProgressCallback,
    ) -> RunnerArtifacts:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        mode = params.get("mode", "preview")
        steps = Steps(progress, self.step_delay_s)
        if mode == "preview":
            artifacts = self._preview(params, out_dir, steps)
        elif mode == "refine":
            artifacts = self._refine(inputs, params, out_dir, steps)
        else:
            raise ValueError(f"unknown mode {mode!r}")
        steps.step()
        return artifacts

    def _preview(self, params: Mapping[str, Any], out_dir: Path, steps: Steps) -> RunnerArtifacts:
        words = prompt_words(params.get("prompt"))
        seed = int(params.get("seed") or 0)
        symmetric = params.get("symmetry_mode") != "off"
        family, comp = procedural_shapes.build(words, seeded_rng(words, seed, "shape"), symmetric)
        steps.step(3)
        verts, faces = polygonise(comp, BASE_RESOLUTION, symmetric)
        steps.step(5)
        if not FACE_RANGE[0] <= len(faces) <= FACE_RANGE[1]:
            # Face count grows with the square of the resolution; one corrected pass lands in range.
            res = int(np.clip(BASE_RESOLUTION * np.sqrt(FACE_TARGET / max(len(faces), 1)), 48, 220))
            verts, faces = polygonise(comp, res, symmetric)
        steps.step(7)
        mesh = trimesh.Trimesh(normalise(verts), faces, process=False)
        mesh.visual.vertex_colors = np.tile(np.array(PREVIEW_GREY, dtype=np.uint8), (len(mesh.vertices), 1))
        steps.step(9)
        path = out_dir / "raw.ply"
        mesh.export(path, file_type="ply")
        return RunnerArtifacts(
            mesh=path,
            metadata={
                "faces": int(len(faces)),
                "vertices": int(len(mesh.vertices)),
                "procedural": True,
                "family": family,
                "seed": seed,
                "symmetric": symmetric,
            },
        )

    def _refine(
        self, inputs: Mapping[str, Any], params: Mapping[str, Any], out_dir: Path, steps: Steps
    ) -> RunnerArtifacts:
        source = inputs.get("preview_mesh")
        if source is None:
            raise ValueError("refine needs inputs['preview_mesh']")
        mesh = trimesh.load(Path(source), force="mesh", process=False)
        # Geometry is kept as is; only colours are new. Welding makes colours continuous across GLB seams.
        mesh = trimesh.Trimesh(mesh.vertices, mesh.faces, process=True)
        steps.step(4)
        seed = int(params.get("seed") or 0)
        image = inputs.get("texture_image")
        text = params.get("texture_prompt") or params.get("prompt") or ""
        words = prompt_words(text)
        if image is not None:
            colours = procedural_paint.project_image(mesh.vertices, Path(image))
            info: dict[str, Any] = {"texture_source": "image"}
        else:
            colours, info = procedural_paint.paint(mesh.vertices, words, seed)
            info["texture_source"] = "prompt"
        steps.step(7)
        alpha = np.full((len(colours), 1), 255, dtype=np.uint8)
        mesh.visual.vertex_colors = np.hstack([colours, alpha])
        path = out_dir / "raw.ply"
        mesh.export(path, file_type="ply")
        steps.step(9)
        return RunnerArtifacts(
            mesh=path,
            metadata={"faces": int(len(mesh.faces)), "procedural": True, "seed": seed, **info},
        )


def normalise(verts: np.ndarray) -> np.ndarray:
    """Scale to a unit longest side, centre on x/z, stand on y = 0 (keeps x = 0 symmetry intact)."""
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    scale = 1.0 / float(np.max(hi - lo))
    centre = np.array([(lo[0] + hi[0]) / 2, lo[1], (lo[2] + hi[2]) / 2])
    return (verts - centre) * scale
