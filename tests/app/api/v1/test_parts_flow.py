"""The part resources end to end with a real worker: a table cut into its top and legs, the parts made whole; files
read back with trimesh, labels with json."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import trimesh

from tests.app.api.v1.test_image_family_flow import download
from tests.app.api.v1.test_model_ops_flow import succeeded
from tests.conftest import Api, Caller, unthrottle
from tests.images import model_data_uri
from tests.inference.test_segmentation import accuracy, build, table

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]
V1 = "/openapi/v1"


async def test_segment_a_table_then_complete_its_parts(api: Api, caller: Caller, db, worker) -> None:  # type: ignore[no-untyped-def]
    await unthrottle(db, caller)
    vertices, faces, truth = build(table(), 0.05)
    glb = trimesh.Trimesh(vertices, faces, process=False).export(file_type="glb")
    seg = await succeeded(api, caller, f"{V1}/mesh-segmentation", {"model_url": model_data_uri(glb), "num_parts": 5})
    assert seg["consumed_credits"] == 5 and seg["thumbnail_url"] and set(seg["model_urls"]) == {"glb"}
    parts = seg["parts"]
    assert parts["num_parts"] == 5 and len(parts["part_urls"]) == 5
    labels = json.loads(await download(api, parts["labels_url"]))
    assert accuracy(np.array(labels["face_labels"]), truth) >= 0.98
    scene = trimesh.load(io.BytesIO(await download(api, seg["model_urls"]["glb"])), file_type="glb", force="scene")
    assert sorted(scene.graph.nodes_geometry) == [f"part_{i:02d}" for i in range(5)]
    one = trimesh.load(io.BytesIO(await download(api, parts["part_urls"][0])), file_type="glb", force="mesh")
    assert len(one.faces) == labels["face_labels"].count(0)

    done = await succeeded(api, caller, f"{V1}/part-completion", {"input_task_id": seg["id"]})
    assert done["consumed_credits"] == 10 and done["parts"]["watertight"] == [True] * 5
    whole = trimesh.load(io.BytesIO(await download(api, done["model_urls"]["glb"])), file_type="glb", force="scene")
    assert all(g.is_watertight for g in whole.geometry.values())
