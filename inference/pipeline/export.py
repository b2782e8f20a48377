"""Writers for OBJ + MTL, STL and 3MF, and PNG encoding of the texture maps.

OBJ is written by hand: trimesh's OBJ/MTL writer sets `Kd 0.4 0.4 0.4`, which darkens the texture in
viewers that multiply Kd, drops the metallic/roughness/normal maps and cannot write quads. 3MF is written
by hand too: trimesh's 3MF writer needs lxml, which is not a dependency, and the format is a zip of three
small XML files. GLB, USDZ and FBX have their own modules.
"""

from __future__ import annotations

import io
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from inference.pipeline.surface import CLAY_RGBA, MATERIAL_NAME, Material, Surface


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes at zlib level 3: within 25 % of level 6's size for baked maps, and faster."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def _rows(fmt: str, array: np.ndarray) -> str:
    """Format rows with one %-operation per block: several times faster than a Python loop per line."""
    out = []
    for start in range(0, len(array), 100_000):
        chunk = array[start : start + 100_000]
        out.append((fmt * len(chunk)) % tuple(chunk.reshape(-1).tolist()))
    return "".join(out)


def export_obj(out_dir: Path, surface: Surface, maps: dict[str, str], stem: str = "model") -> tuple[str, str]:
    """Write `<stem>.obj` (polygons: quads stay quads) and `<stem>.mtl`; `maps` names the texture files
    (keys base_color, metallic, roughness, normal) relative to `out_dir`. Returns the two file names."""
    obj_name, mtl_name = f"{stem}.obj", f"{stem}.mtl"
    # UVs are written whenever the surface has them (a converted model keeps its UVs even without a texture).
    textured = surface.uv is not None
    parts = [
        "# MeshFoundry\n",
        f"mtllib {mtl_name}\n",
        _rows("v %.6f %.6f %.6f\n", np.asarray(surface.vertices, dtype=np.float64)),
    ]
    if textured:
        parts.append(_rows("vt %.6f %.6f\n", np.asarray(surface.uv, dtype=np.float64)))
    parts.append(_rows("vn %.5f %.5f %.5f\n", np.asarray(surface.normals, dtype=np.float64)))
    parts.append(f"usemtl {MATERIAL_NAME}\n")
    counts = np.asarray(surface.face_counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    for size in (4, 3):
        rows = starts[counts == size]
        if len(rows) == 0:
            continue
        # Position, UV and normal share one index: the surface's arrays are all per (split) vertex.
        idx = surface.face_indices[rows[:, None] + np.arange(size)] + 1
        corner = "%d/%d/%d" if textured else "%d//%d"
        per_corner = 3 if textured else 2
        fmt = "f " + " ".join([corner] * size) + "\n"
        parts.append(_rows(fmt, np.repeat(idx, per_corner, axis=1)))
    (Path(out_dir) / obj_name).write_text("".join(parts))
    (Path(out_dir) / mtl_name).write_text(mtl_text(maps))
    return obj_name, mtl_name


def mtl_text(maps: dict[str, str], bump: bool = True) -> str:
    """The MTL for one material; `bump=False` leaves out `map_Bump` (assimp would import the normal map a
    second time as a height map)."""
    lines = [f"newmtl {MATERIAL_NAME}"]
    if "base_color" in maps:
        # White Kd: viewers multiply Kd with map_Kd, so anything else tints the texture.
        lines += ["Ka 1.000000 1.000000 1.000000", "Kd 1.000000 1.000000 1.000000"]
    else:
        kd = " ".join(f"{c / 255:.6f}" for c in CLAY_RGBA[:3])
        lines += [f"Ka {kd}", f"Kd {kd}"]
    lines += ["Ks 0.000000 0.000000 0.000000", "Ns 10.000000", "d 1.000000", "illum 2"]
    if "base_color" in maps:
        lines.append(f"map_Kd {maps['base_color']}")
    if "metallic" in maps:
        lines.append(f"map_Pm {maps['metallic']}")
    if "roughness" in maps:
        lines.append(f"map_Pr {maps['roughness']}")
    if "normal" in maps:
        # Blender's importer reads map_Bump; other PBR-aware readers read norm.
        if bump:
            lines.append(f"map_Bump -bm 1 {maps['normal']}")
        lines.append(f"norm {maps['normal']}")
    return "\n".join(lines) + "\n"


def export_stl(path: Path, surface: Surface) -> None:
    """Binary STL (geometry only, triangles)."""
    trimesh.Trimesh(surface.vertices, surface.triangles, process=False).export(Path(path), file_type="stl")


_3MF_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="model" ContentType="application/vnd.ms-package.3dmanufacturing-3dmodel+xml"/>'
    "</Types>"
)
_3MF_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Target="/3D/3dmodel.model" Id="rel0" '
    'Type="http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"/></Relationships>'
)


def export_3mf(path: Path, surface: Surface) -> None:
    """3MF core (geometry only, triangles). 3MF's build volume is Z-up, so the Y-up model is rotated +90°
    about X; units are metres, like glTF's."""
    v = np.asarray(surface.vertices, dtype=np.float64)
    z_up = np.column_stack([v[:, 0], -v[:, 2], v[:, 1]])
    model = "".join(
        [
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<model unit="meter" xml:lang="en-US" '
            'xmlns="http://schemas.microsoft.com/3dmanufacturing/core/2015/02">'
            '<resources><object id="1" type="model"><mesh><vertices>',
            _rows('<vertex x="%.6f" y="%.6f" z="%.6f"/>', z_up),
            "</vertices><triangles>",
            _rows('<triangle v1="%d" v2="%d" v3="%d"/>', np.asarray(surface.triangles, dtype=np.int64)),
            '</triangles></mesh></object></resources><build><item objectid="1"/></build></model>',
        ]
    )
    with zipfile.ZipFile(Path(path), "w", compression=zipfile.ZIP_DEFLATED, compresslevel=3) as zf:
        zf.writestr("[Content_Types].xml", _3MF_TYPES)
        zf.writestr("_rels/.rels", _3MF_RELS)
        zf.writestr("3D/3dmodel.model", model)


def write_textures(out_dir: Path, material: Material) -> None:
    """Write each texture file of `material` from its encoded bytes."""
    for key, name in material.files.items():
        (Path(out_dir) / name).write_bytes(material.png[key])


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link `src` to `dst` (same folder tree, so usually possible), else copy it."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
