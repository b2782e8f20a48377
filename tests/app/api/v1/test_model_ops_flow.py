"""The model operations end to end: a worker runs each on an earlier task's model or an uploaded one; outputs are
read back by independent readers (trimesh, PIL, zip+XML for 3MF)."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import numpy as np
import pytest
import trimesh
from PIL import Image

from tests.app.api.v1.test_image_family_flow import create, download, wait_terminal
from tests.conftest import Api, Caller
from tests.images import model_data_uri

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]
V1 = "/openapi/v1"
T23D = "/openapi/v2/text-to-3d"


async def succeeded(api: Api, caller: Caller, path: str, body: dict[str, Any]) -> dict[str, Any]:
    task = await wait_terminal(api, caller, path, await create(api, caller, path, body))
    assert task["status"] == "SUCCEEDED", (path, task["task_error"])
    return task


async def mesh_of(api: Api, url: str, file_type: str) -> trimesh.Trimesh:
    mesh = trimesh.load(io.BytesIO(await download(api, url)), file_type=file_type, force="mesh")
    return mesh


def broken_stl() -> bytes:
    """A box with one face missing and one flipped: not watertight, inconsistent winding."""
    box = trimesh.creation.box()
    faces = box.faces[1:].copy()
    faces[0] = faces[0][::-1]
    return trimesh.Trimesh(box.vertices, faces, process=False).export(file_type="stl")


async def test_operations_on_an_earlier_task(api: Api, caller: Caller, worker) -> None:  # type: ignore[no-untyped-def]
    preview = await succeeded(api, caller, T23D, {"mode": "preview", "prompt": "a mushroom", "seed": 2,
                                                  "target_formats": ["glb"]})  # fmt: skip
    refine = await succeeded(api, caller, T23D, {"mode": "refine", "preview_task_id": preview["id"],
                                                 "texture_prompt": "red", "target_formats": ["glb"]})  # fmt: skip

    remeshed = await succeeded(api, caller, f"{V1}/remesh", {"input_task_id": refine["id"], "target_polycount": 2000})
    assert set(remeshed["model_urls"]) == {"glb"} and remeshed["consumed_credits"] == 5
    glb = await mesh_of(api, remeshed["model_urls"]["glb"], "glb")
    assert 1600 <= len(glb.faces) <= 2400
    assert remeshed["texture_urls"], "a textured model keeps its texture through remesh"

    converted = await succeeded(api, caller, f"{V1}/convert", {"input_task_id": refine["id"],
                                                               "target_formats": ["obj", "stl"]})  # fmt: skip
    assert converted["model_urls"]["glb"] == "" and converted["model_urls"]["fbx"] == ""
    assert converted["model_urls"]["obj"] and converted["model_urls"]["stl"]
    stl = await mesh_of(api, converted["model_urls"]["stl"], "stl")
    assert len(stl.faces) > 100

    resized = await succeeded(api, caller, f"{V1}/resize", {"input_task_id": refine["id"], "resize_height": 2.0})
    resized_glb = await mesh_of(api, resized["model_urls"]["glb"], "glb")
    assert resized_glb.extents[1] == pytest.approx(2.0, rel=0.02)
    assert resized_glb.bounds[0][1] == pytest.approx(0.0, abs=0.02)

    analysis = await succeeded(api, caller, f"{V1}/print/analyze", {"input_task_id": preview["id"]})
    assert analysis["consumed_credits"] == 0
    assert analysis["printability"]["status"] in ("healthy", "warning")
    assert analysis["printability"]["metrics"]["is_watertight"] is True

    retextured = await succeeded(api, caller, f"{V1}/retexture", {"input_task_id": remeshed["id"],
                                                                  "text_style_prompt": "blue"})  # fmt: skip
    texture = np.asarray(Image.open(io.BytesIO(await download(api, retextured["texture_urls"][0]["base_color"]))
                                    ).convert("RGB"), dtype=float)  # fmt: skip
    r, g, b = texture.reshape(-1, 3).mean(axis=0)
    assert b > r + 20, "the new texture follows the prompt"

    colours = await succeeded(api, caller, f"{V1}/print/multi-color", {"input_task_id": refine["id"],
                                                                       "max_colors": 3})  # fmt: skip
    with zipfile.ZipFile(io.BytesIO(await download(api, colours["model_urls"]["3mf"]))) as archive:
        model_xml = archive.read("3D/3dmodel.model").decode()
    assert "<triangle" in model_xml and ("colorgroup" in model_xml or "basematerials" in model_xml)

    unwrapped = await succeeded(api, caller, f"{V1}/uv-unwrap", {"input_task_id": remeshed["id"]})
    unwrapped_glb = await mesh_of(api, unwrapped["model_urls"]["glb"], "glb")
    uv = np.asarray(unwrapped_glb.visual.uv)
    assert uv.min() >= -1e-6 and uv.max() <= 1 + 1e-6


async def test_operations_on_uploaded_models(api: Api, caller: Caller, worker) -> None:  # type: ignore[no-untyped-def]
    broken = model_data_uri(broken_stl())
    before = await succeeded(api, caller, f"{V1}/print/analyze", {"model_url": broken})
    assert before["printability"]["status"] == "error"
    assert before["printability"]["metrics"]["is_watertight"] is False
    repaired = await succeeded(api, caller, f"{V1}/print/repair", {"model_url": broken})
    assert set(repaired["model_urls"]) == {"stl"}, "repair keeps the input's format"
    after = await succeeded(api, caller, f"{V1}/print/analyze", {"input_task_id": repaired["id"]})
    assert after["printability"]["status"] == "healthy"

    box = model_data_uri(trimesh.creation.box(extents=(1, 2, 3)).export(file_type="obj").encode())
    resized = await succeeded(api, caller, f"{V1}/resize", {"model_url": box, "resize_longest_side": 6.0,
                                                            "origin_at": "center"})  # fmt: skip
    assert set(resized["model_urls"]) >= {"obj"}, "from a file, resize keeps its format"
    obj = await mesh_of(api, resized["model_urls"]["obj"], "obj")
    assert max(obj.extents) == pytest.approx(6.0, rel=0.02)

    textured = await succeeded(api, caller, f"{V1}/text-to-texture", {
        "model_url": model_data_uri(trimesh.creation.icosphere(subdivisions=3).export(file_type="glb")),
        "object_prompt": "a ball", "style_prompt": "green", "enable_original_uv": False})  # fmt: skip
    assert {"glb", "fbx", "usdz"} <= set(textured["model_urls"]) and textured["texture_urls"]


async def test_a_corrupt_model_fails_with_invalid_input_and_a_refund(api: Api, caller: Caller, worker) -> None:  # type: ignore[no-untyped-def]
    corrupt = model_data_uri(b"glTF" + b"\x02\x00\x00\x00" + b"\xff" * 40)
    task = await wait_terminal(api, caller, f"{V1}/remesh", await create(api, caller, f"{V1}/remesh",
                                                                         {"model_url": corrupt}))  # fmt: skip
    assert task["status"] == "FAILED" and task["task_error"]["type"] == "invalid_input"
    assert task["consumed_credits"] == 0
    assert (await api.client.get("/openapi/v1/balance", headers=caller.headers)).json()["balance"] == 1000
