"""USDZ writer (usd-core): an ARKit-style package with one UsdGeom.Mesh and a UsdPreviewSurface material.

The mesh keeps polygons (quads stay quads: faceVertexCounts 4), has vertex normals and, when textured, an
`st` primvar; `subdivisionScheme = none` because USD otherwise treats every mesh as a Catmull-Clark cage.
Textured materials read base colour (sRGB), metallic and roughness (`.r`, raw) and the normal map (raw,
scale (2, 2, 2, 1), bias (-1, -1, -1, 0): the encoding UsdValidation's normal-map check asks for) through
UsdUVTexture nodes; untextured previews get a plain grey UsdPreviewSurface. The stage is written as
`model.usdc` beside links to the textures in a scratch folder and packaged with
`UsdUtils.CreateNewARKitUsdzPackage`, which embeds the referenced textures (at the archive root, after the
layer, as the USDZ spec wants).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from pxr import Gf, Sdf, Usd, UsdGeom, UsdShade, UsdUtils, Vt

from inference.pipeline.export import link_or_copy
from inference.pipeline.surface import (
    CLAY_METALLIC,
    CLAY_RGBA,
    CLAY_ROUGHNESS,
    MATERIAL_NAME,
    METALLIC,
    ROUGHNESS,
    Material,
    Surface,
)

ROOT = "/Model"


def _texture(material: UsdShade.Material, name: str, file: str, reader: UsdShade.Shader, raw: bool):
    shader = UsdShade.Shader.Define(material.GetPrim().GetStage(), material.GetPath().AppendChild(name))
    shader.CreateIdAttr("UsdUVTexture")
    # "./" keeps the packager from rewriting the path to "0/..." and warning that it cannot resolve it.
    shader.CreateInput("file", Sdf.ValueTypeNames.Asset).Set(f"./{file}")
    shader.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(reader.ConnectableAPI(), "result")
    shader.CreateInput("wrapS", Sdf.ValueTypeNames.Token).Set("repeat")
    shader.CreateInput("wrapT", Sdf.ValueTypeNames.Token).Set("repeat")
    shader.CreateInput("sourceColorSpace", Sdf.ValueTypeNames.Token).Set("raw" if raw else "sRGB")
    return shader


def _material(stage: Usd.Stage, material: Material) -> UsdShade.Material:
    usd_material = UsdShade.Material.Define(stage, f"{ROOT}/Materials/{MATERIAL_NAME}")
    surface = UsdShade.Shader.Define(stage, usd_material.GetPath().AppendChild("PreviewSurface"))
    surface.CreateIdAttr("UsdPreviewSurface")
    usd_material.CreateSurfaceOutput().ConnectToSource(surface.ConnectableAPI(), "surface")
    inputs = {
        name: surface.CreateInput(name, kind)
        for name, kind in (
            ("diffuseColor", Sdf.ValueTypeNames.Color3f),
            ("metallic", Sdf.ValueTypeNames.Float),
            ("roughness", Sdf.ValueTypeNames.Float),
            ("normal", Sdf.ValueTypeNames.Normal3f),
        )
    }
    if not material.textured:
        inputs["diffuseColor"].Set(Gf.Vec3f(*(c / 255 for c in CLAY_RGBA[:3])))
        inputs["metallic"].Set(CLAY_METALLIC)
        inputs["roughness"].Set(CLAY_ROUGHNESS)
        return usd_material
    reader = UsdShade.Shader.Define(stage, usd_material.GetPath().AppendChild("TexCoordReader"))
    reader.CreateIdAttr("UsdPrimvarReader_float2")
    reader.CreateInput("varname", Sdf.ValueTypeNames.String).Set("st")
    reader.CreateOutput("result", Sdf.ValueTypeNames.Float2)
    files = material.files
    base = _texture(usd_material, "BaseColorTexture", files["base_color"], reader, raw=False)
    inputs["diffuseColor"].ConnectToSource(base.CreateOutput("rgb", Sdf.ValueTypeNames.Float3))
    for key in ("metallic", "roughness"):
        if key in files:
            shader = _texture(usd_material, f"{key.capitalize()}Texture", files[key], reader, raw=True)
            inputs[key].ConnectToSource(shader.CreateOutput("r", Sdf.ValueTypeNames.Float))
        else:
            inputs[key].Set(METALLIC if key == "metallic" else ROUGHNESS)
    if "normal" in files:
        normal = _texture(usd_material, "NormalTexture", files["normal"], reader, raw=True)
        normal.CreateInput("scale", Sdf.ValueTypeNames.Float4).Set(Gf.Vec4f(2, 2, 2, 1))
        normal.CreateInput("bias", Sdf.ValueTypeNames.Float4).Set(Gf.Vec4f(-1, -1, -1, 0))
        inputs["normal"].ConnectToSource(normal.CreateOutput("rgb", Sdf.ValueTypeNames.Float3))
    return usd_material


def write_stage(path: Path, surface: Surface, material: Material) -> None:
    """Write the USD layer (`.usdc` or `.usda`); texture paths are relative to its folder."""
    stage = Usd.Stage.CreateNew(str(path))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    root = UsdGeom.Xform.Define(stage, ROOT)
    stage.SetDefaultPrim(root.GetPrim())
    mesh = UsdGeom.Mesh.Define(stage, f"{ROOT}/Geom/model")
    vertices = np.ascontiguousarray(surface.vertices, dtype=np.float32)
    mesh.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(vertices))
    lo, hi = vertices.min(axis=0).tolist(), vertices.max(axis=0).tolist()
    mesh.CreateExtentAttr(Vt.Vec3fArray([Gf.Vec3f(*lo), Gf.Vec3f(*hi)]))
    mesh.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.asarray(surface.face_counts, dtype=np.int32)))
    mesh.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(np.asarray(surface.face_indices, dtype=np.int32)))
    mesh.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
    mesh.CreateOrientationAttr(UsdGeom.Tokens.rightHanded)
    mesh.CreateNormalsAttr(Vt.Vec3fArray.FromNumpy(np.ascontiguousarray(surface.normals, dtype=np.float32)))
    mesh.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
    if surface.uv is not None:  # kept even without a texture (a converted model keeps its UVs)
        st = UsdGeom.PrimvarsAPI(mesh).CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.vertex)
        st.Set(Vt.Vec2fArray.FromNumpy(np.ascontiguousarray(surface.uv, dtype=np.float32)))
    usd_material = _material(stage, material)
    UsdShade.MaterialBindingAPI.Apply(mesh.GetPrim()).Bind(usd_material)
    stage.GetRootLayer().Save()


def export_usdz(path: Path, surface: Surface, material: Material, texture_dir: Path) -> None:
    """Write `path` (.usdz); the material's texture files are read from `texture_dir`."""
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix=".usdz-", dir=path.parent) as scratch:
        work = Path(scratch)
        for name in material.files.values():
            link_or_copy(Path(texture_dir) / name, work / name)
        write_stage(work / "model.usdc", surface, material)
        ok = UsdUtils.CreateNewARKitUsdzPackage(Sdf.AssetPath(str(work / "model.usdc")), str(path))
        if not ok or not path.is_file():
            raise RuntimeError(f"USDZ packaging failed for {path.name}")
