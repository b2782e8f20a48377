"""FBX writer: the OBJ + MTL converted to binary FBX 7.5 by the assimp 6 CLI bundled in cmeel-assimp.

There is no free FBX SDK for Python. Debian's assimp 5.2 writes binary FBX that no reader (not even
assimp) loads back; cmeel-assimp's assimp 6.0.5 writes files that Blender 5, ufbx and assimp read. The
source is the OBJ because it keeps quads (glTF cannot); `--embed-textures` packs the PNGs it references
into the FBX and `-jiv` welds the per-corner vertices the OBJ importer creates. The MTL given to assimp
omits `map_Bump`, which assimp would import as a second (height) texture. FBX has no slot assimp fills
for metallic/roughness maps, so the FBX carries base colour and normal map only. The conversion runs in a
subprocess (it releases the GIL, and a crash cannot take the worker down) with a timeout.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sysconfig
import tempfile
from functools import lru_cache
from pathlib import Path

from inference.pipeline.export import export_obj, link_or_copy, mtl_text
from inference.pipeline.surface import Surface

TIMEOUT_S = 120.0
_BINARY = ("cmeel.prefix", "bin", "assimp")


class AssimpNotFound(RuntimeError):
    """The cmeel-assimp package (and its `assimp` binary) is not installed."""


@lru_cache(maxsize=1)
def assimp_binary() -> tuple[Path, Path]:
    """(assimp executable, its library folder) from the installed cmeel-assimp distribution."""
    candidates = []
    try:
        for file in importlib.metadata.distribution("cmeel-assimp").files or []:
            if file.parts[-3:] == _BINARY:
                candidates.append(Path(str(file.locate())))
    except importlib.metadata.PackageNotFoundError:
        pass
    # Fall back to the conventional location in this environment's site-packages.
    candidates.append(Path(sysconfig.get_paths()["purelib"]).joinpath(*_BINARY))
    for binary in candidates:
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary.resolve(), binary.resolve().parent.parent / "lib"
    raise AssimpNotFound("FBX export needs the cmeel-assimp package (its bundled `assimp` binary was not found)")


def run_assimp(*args: str, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run the bundled assimp CLI with its shared library on the loader path."""
    binary, libdir = assimp_binary()
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(libdir), env.get("LD_LIBRARY_PATH")) if p)
    return subprocess.run([str(binary), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def export_fbx(path: Path, surface: Surface, maps: dict[str, str], texture_dir: Path, obj: Path | None = None) -> None:
    """Write binary FBX `path`. `obj`, if given, is an OBJ already written for this surface (reused rather
    than written again); `maps` names texture files in `texture_dir`."""
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix=".fbx-", dir=path.parent) as scratch:
        work = Path(scratch)
        if obj is not None:
            link_or_copy(Path(obj), work / "model.obj")
            (work / "model.mtl").write_text(mtl_text(maps, bump=False))
        else:
            export_obj(work, surface, maps)
            (work / "model.mtl").write_text(mtl_text(maps, bump=False))
        for name in maps.values():
            link_or_copy(Path(texture_dir) / name, work / name)
        out = work / "model.fbx"
        try:
            result = run_assimp("export", str(work / "model.obj"), str(out), "-ffbx", "--embed-textures", "-jiv")
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"assimp FBX export timed out after {exc.timeout:.0f} s") from exc
        if result.returncode != 0 or not out.is_file() or out.stat().st_size == 0:
            tail = (result.stderr or result.stdout or "").strip()[-400:]
            raise RuntimeError(f"assimp FBX export failed (exit {result.returncode}): {tail}")
        shutil.move(str(out), path)
