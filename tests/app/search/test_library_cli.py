"""`meshfoundry library import|list|delete` against the test database, as an operator runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.app.search.library import write_library

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("pgvector")]
CLI = str(Path(sys.executable).parent / "meshfoundry")


def test_import_list_resume_and_delete(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "DATABASE_URL": settings.database_url, "MESHFOUNDRY_HOME": str(settings.home),
           "MESHFOUNDRY_SECRET_KEY": settings.secret().decode()}  # fmt: skip

    def run(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([CLI, "library", *args], env=env, capture_output=True, text=True, timeout=180)
        assert result.returncode == code, result.stderr
        return result

    captions = write_library(tmp_path / "lib", ("crate", "ring"), captions_as="csv")
    (tmp_path / "lib" / "broken.glb").write_bytes(b"glTF not really")
    first = run("import", str(tmp_path / "lib"), "--collection", "props", "--captions", str(captions), "--quiet",
                code=1)  # fmt: skip
    assert "props: 2 imported, 0 already there, 1 failed" in first.stderr and "broken.glb" in first.stderr
    again = run("import", str(tmp_path / "lib"), "--collection", "props", "--formats", "glb", "--quiet", code=1)
    assert "0 imported, 2 already there, 1 failed" in again.stderr
    assert run("list").stdout.splitlines() == ["props\t2 assets\tshared with every account"]
    # Every format a task offers was written, with a thumbnail, under the asset's folder.
    folders = [p for p in settings.assets_path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    written = {sorted(q.suffix for q in p.iterdir()).__str__() for p in folders if (p / "model.usdz").exists()}
    assert len(written) >= 1 and all(".fbx" in w and ".obj" in w and ".png" in w for w in written)
    run("import", str(tmp_path / "nowhere"), "--collection", "props", code=2)
    run("import", str(tmp_path / "lib"), "--collection", "generated", code=2)
    assert "deleted collection 'props' and its 2 assets" in run("delete", "props").stderr
    assert run("list").stdout == ""
    run("delete", "props", code=2)
