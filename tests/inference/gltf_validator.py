"""The Khronos glTF validator (npm `gltf-validator`, run with node) as a pytest fixture: `validate(path) -> issues`.

Import the fixture into a test module (`from tests.inference.gltf_validator import validate`). The first use installs
the validator under `.meshfoundry-test/node` (retried; it can take minutes), so tests using it need a long timeout.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parents[2] / ".meshfoundry-test" / "node"
VALIDATOR = "gltf-validator@2.0.0-dev.3.10"
SCRIPT = """
const fs = require('fs');
const validator = require('gltf-validator');
validator.validateBytes(new Uint8Array(fs.readFileSync(process.argv[2])))
  .then((report) => console.log(JSON.stringify(report.issues)))
  .catch((error) => { console.error(error); process.exit(1); });
"""


@pytest.fixture(scope="module")
def validate() -> Callable[[Path], dict]:
    if not (shutil.which("node") and shutil.which("npm")):
        if os.environ.get("CI"):
            pytest.fail("node and npm are needed for the Khronos glTF validator")
        pytest.skip("node/npm not installed")
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    with open(NODE_DIR.parent / "node.lock", "w") as lock:  # parallel test workers install it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        _install()
    (NODE_DIR / "validate.js").write_text(SCRIPT)

    def run(glb: Path) -> dict:
        out = subprocess.run(["node", str(NODE_DIR / "validate.js"), str(glb)], cwd=NODE_DIR, check=True,
                             capture_output=True, text=True, timeout=120)  # fmt: skip
        return json.loads(out.stdout)

    return run


def _install() -> None:
    if not (NODE_DIR / "node_modules" / "gltf-validator").exists():
        for attempt in range(3):  # the registry is a network away: retry a slow or failed install
            try:
                subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(NODE_DIR),
                                VALIDATOR], check=True, capture_output=True, timeout=180)  # fmt: skip
                break
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                if attempt == 2:
                    raise
