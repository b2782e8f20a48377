"""Read an FBX with ufbx 0.0.5 and print a JSON summary (run in a subprocess by the tests).

ufbx 0.0.5 crashes when its wrapper objects are freed (even by the garbage collector, later), so the reading happens
in a child process that keeps every wrapper alive and leaves with os._exit. Usage:
    python fbx_probe.py FILE.fbx STACK_INDEX TIME_S
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import ufbx
from scipy.spatial.transform import Rotation

KEEP: list = []


def items(lst) -> list:  # type: ignore[no-untyped-def]
    out = [lst[i] for i in range(len(lst))]
    KEEP.extend([lst, out])
    return out


def main(path: str, stack_index: int, time: float) -> dict:
    scene = ufbx.load_file(path)
    KEEP.append(scene)
    nodes = items(scene.nodes)
    bones = []
    for n in nodes:
        bone = n.bone
        KEEP.append(bone)
        if bone is not None:
            bones.append(n.name)
    meshes = items(scene.meshes)
    clusters = items(scene.skin_clusters)
    cluster_bones, totals = [], np.zeros(meshes[0].num_vertices if meshes else 0)
    for c in clusters:
        node = c.bone_node
        KEEP.append(node)
        cluster_bones.append(node.name)
        vertices, weights = items(c.vertices), items(c.weights)
        np.add.at(totals, np.array(vertices, dtype=np.int64), np.array(weights, dtype=np.float64))
    stacks = []
    for stack in items(scene.anim_stacks):
        layer = items(stack.layers)[0]
        keys = {}
        for prop in items(layer.anim_props):
            element, value = prop.element, prop.anim_value
            KEEP.extend([element, value])
            if prop.prop_name == "Lcl Rotation":
                curves = items(value.curves)
                counts = []
                for c in curves:
                    frames = c.keyframes if c is not None else None
                    KEEP.append(frames)
                    counts.append(len(frames) if frames is not None else 0)
                keys[element.name] = counts
        stacks.append({"name": stack.name, "begin": stack.time_begin, "end": stack.time_end, "rotation_keys": keys})
    world: dict[str, list] = {}
    if stacks:
        anim = items(scene.anim_stacks)[stack_index].anim
        KEEP.append(anim)
        by_name = {n.name: n for n in nodes}
        mats: dict[str, np.ndarray] = {}

        def world_of(n) -> np.ndarray:  # type: ignore[no-untyped-def]
            if n.name in mats:
                return mats[n.name]
            if n.is_root:  # ufbx 0.0.5 crashes evaluating the scene root
                return np.eye(4)
            t = ufbx.evaluate_transform(anim, n, time)
            KEEP.append(t)
            m = np.eye(4)
            m[:3, :3] = Rotation.from_quat([t.rotation.x, t.rotation.y, t.rotation.z, t.rotation.w]).as_matrix()
            m[:3, :3] *= [t.scale.x, t.scale.y, t.scale.z]
            m[:3, 3] = [t.translation.x, t.translation.y, t.translation.z]
            p = n.parent
            KEEP.append(p)
            parent = by_name.get(p.name) if p is not None else None
            mats[n.name] = (world_of(parent) if parent is not None and parent is not n else np.eye(4)) @ m
            return mats[n.name]

        world = {name: world_of(by_name[name])[:3, 3].tolist() for name in bones}
    return {
        "bones": bones,
        "meshes": [{"vertices": m.num_vertices, "faces": m.num_faces} for m in meshes],
        "skin_deformers": len(items(scene.skin_deformers)),
        "cluster_bones": cluster_bones,
        "weight_totals": totals.tolist(),
        "fps": scene.settings.frames_per_second,
        "stacks": stacks,
        "world": world,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))), flush=True)
    os._exit(0)  # skip interpreter teardown (ufbx frees)
