"""Our GLBs pass the Khronos glTF validator (npm `gltf-validator`, run with node): 0 errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.pipeline.deliverables import build_deliverables
from inference.runners.procedural import ProceduralRunner

# The first test also installs the validator from npm (retried): more than the default time limit.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.mark.parametrize(
    "params",
    [
        {"mode": "preview", "should_remesh": True, "target_polycount": 5000},
        {"mode": "refine", "texture_prompt": "red lacquer", "enable_pbr": True, "target_polycount": 5000},
        {"mode": "refine", "texture_prompt": "oak", "topology": "quad", "target_polycount": 3000},
    ],
    ids=["preview", "refine-pbr", "refine-quad"],
)
def test_glb_has_no_validator_errors(validate, params: dict, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runner = ProceduralRunner()
    preview_dir = tmp_path / "preview"
    preview_dir.mkdir()
    base = {"prompt": "a wooden chair", "seed": 2, "target_formats": ["glb"]}
    raw = runner.run({}, {**base, "mode": "preview"}, preview_dir, lambda f: None).mesh
    if params["mode"] == "refine":
        refine_dir = tmp_path / "refine"
        refine_dir.mkdir()
        raw = runner.run({"preview_mesh": raw}, {**base, **params}, refine_dir, lambda f: None).mesh
    out = tmp_path / "out"
    result = build_deliverables(raw, {**base, "should_remesh": True, **params}, out)
    issues = validate(out / result.model_files["glb"])
    assert issues["numErrors"] == 0, issues["messages"][:5]


@pytest.fixture(scope="module")
def textured_model(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A refined procedural chair (PBR) read back through the model-input reader, as the operations receive it."""
    from inference.pipeline.model_input import load_model

    folder = tmp_path_factory.mktemp("source")
    runner = ProceduralRunner()
    base = {"prompt": "a wooden chair", "seed": 2, "target_formats": ["glb"]}
    raw = runner.run({}, {**base, "mode": "preview"}, folder / "p", lambda f: None).mesh
    raw = runner.run({"preview_mesh": raw}, {**base, "mode": "refine", "texture_prompt": "red"}, folder / "r",
                     lambda f: None).mesh  # fmt: skip
    result = build_deliverables(raw, {**base, "mode": "refine", "enable_pbr": True, "target_polycount": 6000},
                                folder / "out")  # fmt: skip
    return load_model(folder / "out" / result.model_files["glb"], "glb")


@pytest.mark.parametrize(
    ("operation", "params"),
    [
        ("remesh", {"target_polycount": 2000}),
        ("remesh", {"topology": "quad", "target_polycount": 1500, "resize_height": 1.2}),
        ("convert", {"target_formats": ["glb"]}),
        ("resize", {"resize_longest_side": 2.0, "output_format": "glb"}),
        ("retexture", {"text_style_prompt": "blue", "enable_pbr": True, "target_formats": ["glb"]}),
        ("uv-unwrap", {}),
        ("print-repair", {}),
    ],
    ids=["remesh", "remesh-quad-resized", "convert", "resize", "retexture-pbr", "uv-unwrap", "repair"],
)
def test_model_operations_write_valid_glbs(validate, textured_model, operation: str, params: dict,
                                           tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    from inference.pipeline import model_ops, printing, retexture

    calls = {
        "remesh": lambda: model_ops.remesh(textured_model, params, tmp_path, lambda f: None),
        "convert": lambda: model_ops.convert(textured_model, params, tmp_path, lambda f: None),
        "resize": lambda: model_ops.resize(textured_model, params, tmp_path, lambda f: None),
        "retexture": lambda: retexture.retexture(textured_model, params, tmp_path, lambda f: None),
        "uv-unwrap": lambda: retexture.uv_unwrap(textured_model, params, tmp_path, lambda f: None),
        "print-repair": lambda: printing.repair(textured_model, tmp_path, lambda f: None),
    }
    result = calls[operation]()
    issues = validate(tmp_path / result.model_files["glb"])
    assert issues["numErrors"] == 0, issues["messages"][:5]
