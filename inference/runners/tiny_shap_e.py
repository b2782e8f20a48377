"""A tiny, randomly initialised Shap-E pipeline for tests and GPU smoke runs: NOT a model, its shapes mean nothing.

`build_tiny_shap_e(path)` writes a complete `diffusers.ShapEPipeline` directory (about 129k parameters, a few
hundred kB) that `ShapEPipeline.from_pretrained(path, local_files_only=True)` loads exactly like the real
`openai/shap-e` checkpoint, so `ShapERunner` is exercised through its real loading and generation path without
any download. Component shapes follow diffusers' own fast test (`tests/pipelines/shap_e/test_shap_e.py`).

Two things differ from that test, both because the test only renders images and we need meshes:

* Tokenizer. The test fetches `hf-internal-testing/tiny-random-clip` from the hub; here a byte-level CLIP BPE
  tokenizer is built offline from a generated vocabulary (the 256 byte characters, each plain and with `</w>`,
  plus the start and end tokens) with no merges, so every prompt still tokenises deterministically.
* Mesh decoding. `MeshDecoder.cases`/`masks` (the marching-cubes lookup table) are zero buffers that only a real
  checkpoint fills, and a random SDF head has no useful zero level set. `install_marching_cubes_lut` fills the
  table from a LUT generated from first principles below, and `calibrate_sdf_bias` shifts the bias of the SDF
  output channel so a few percent of the grid is inside. Both are persistent weights (buffers and a bias), so
  they survive `save_pretrained`/`from_pretrained`; the runner itself carries no such fix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import HeunDiscreteScheduler, PriorTransformer, ShapEPipeline
from diffusers.pipelines.shap_e import ShapERenderer
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

# Shapes of diffusers' fast test: 32-wide text/prior, an 8-wide renderer MLP.
TEXT_HIDDEN = 32
TIME_INPUT_DIM = 32
RENDERER_DIM = 8
# Prompt/seed whose decoded field calibrates the SDF bias; the percentile of that field moved to zero sets how
# much of the grid is "inside" (0.99 gives ~2.5e5 faces for this prompt: a real mesh, still quick to write).
CALIBRATION_PROMPT = "a horse"
CALIBRATION_SEED = 0
INSIDE_QUANTILE = 0.99
CALIBRATION_GRID = 48


def byte_level_vocab() -> dict[str, int]:
    """CLIP's byte-to-unicode alphabet, each symbol plain and word-final, plus <|startoftext|>=0, <|endoftext|>=2.

    Ids 0 and 2 match the tiny text encoder's bos/eos ids; the 512 symbols take id 1 and 3..513 (514 tokens).
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    # Bytes without a printable glyph map to 256+n, exactly as GPT-2/CLIP's bytes_to_unicode does.
    extra = iter(range(256, 512))
    symbols = [chr(b) if b in printable else chr(next(extra)) for b in range(256)]
    tokens = symbols + [s + "</w>" for s in symbols]
    ids = [1, *range(3, 3 + len(tokens) - 1)]
    return {"<|startoftext|>": 0, "<|endoftext|>": 2, **dict(zip(tokens, ids, strict=True))}


def offline_clip_tokenizer() -> CLIPTokenizer:
    """A CLIP tokenizer built without the hub; with no merges every byte is its own token."""
    return CLIPTokenizer(vocab=byte_level_vocab(), merges=[], model_max_length=77)


def _corner(c: int) -> tuple[int, int, int]:
    # diffusers' MeshDecoder sets bit (dx + 2*dy + 4*dz) for a corner whose field value is > 0 (inside).
    return c & 1, (c >> 1) & 1, (c >> 2) & 1


def _edge(a: int, b: int) -> int:
    """Local edge index of corners a-b in `_create_flat_edge_indices` order: 4 x-edges, 4 y-edges, 4 z-edges,
    each group ordered by the two fixed coordinates (first + 2 * second)."""
    pa, pb = _corner(a), _corner(b)
    (axis,) = [i for i in range(3) if pa[i] != pb[i]]
    first, second = (p for i, p in enumerate(pa) if i != axis)
    return 4 * axis + first + 2 * second


def _cube_faces() -> list[list[int]]:
    """The six cube faces, each as its four corners counter-clockwise seen from outside the cube."""
    faces = []
    for axis in range(3):
        for side in (0, 1):
            corners = [c for c in range(8) if _corner(c)[axis] == side]
            centre = np.mean([_corner(c) for c in corners], axis=0)
            normal = np.zeros(3)
            normal[axis] = 1.0 if side else -1.0
            u = np.zeros(3)
            u[(axis + 1) % 3] = 1.0
            v = np.cross(normal, u)  # (u, v, normal) is right-handed, so increasing angle is CCW from outside

            def angle(c: int, centre=centre, u=u, v=v) -> float:
                d = np.asarray(_corner(c), dtype=float) - centre
                return float(np.arctan2(d @ v, d @ u))

            faces.append(sorted(corners, key=angle))
    return faces


def marching_cubes_triangles(config: int, faces: list[list[int]] | None = None) -> list[tuple[int, int, int]]:
    """Triangles (as local edge indices) for one of the 256 inside/outside corner configurations.

    Each cube face contributes segments between its sign-change edges. Walking the face CCW from an outside
    corner, crossings alternate enter/leave; pairing each enter with the next leave cuts every inside run off
    on its own, i.e. ambiguous (diagonal) faces always separate the inside corners. The choice depends only on
    the face's four corners, which the neighbouring cube sees identically, so the surface is watertight. An
    edge shared by two faces is walked in opposite directions by them, so the directed segments chain into
    closed loops; each loop is fanned into triangles, wound so normals point from inside (> 0) to outside.
    """
    inside = [(config >> c) & 1 for c in range(8)]
    following: dict[int, int] = {}
    for cycle in faces or _cube_faces():
        start = next((k for k in range(4) if not inside[cycle[k]]), None)
        if start is None:
            continue  # all four corners inside: no crossing on this face
        crossings = [
            _edge(cycle[(start + j) % 4], cycle[(start + j + 1) % 4])
            for j in range(4)
            if inside[cycle[(start + j) % 4]] != inside[cycle[(start + j + 1) % 4]]
        ]
        for enter, leave in zip(crossings[::2], crossings[1::2], strict=True):
            following[leave] = enter
    triangles: list[tuple[int, int, int]] = []
    seen: set[int] = set()
    for first in following:
        if first in seen:
            continue
        loop = [first]
        seen.add(first)
        point = following[first]
        while point != first:
            loop.append(point)
            seen.add(point)
            point = following[point]
        # Reversed fan: the loops above run clockwise seen from outside the surface (checked on a sphere).
        triangles += [(loop[0], loop[i + 1], loop[i]) for i in range(1, len(loop) - 1)]
    return triangles


def marching_cubes_lut() -> tuple[torch.Tensor, torch.Tensor]:
    """`(cases[256, 5, 3] long, masks[256, 5] bool)` in the layout diffusers' MeshDecoder indexes (820 triangles)."""
    cases = torch.zeros(256, 5, 3, dtype=torch.long)
    masks = torch.zeros(256, 5, dtype=torch.bool)
    faces = _cube_faces()
    for config in range(256):
        triangles = marching_cubes_triangles(config, faces)
        if len(triangles) > 5:  # MeshDecoder has room for 5 per cube; this construction never needs more
            raise AssertionError(f"configuration {config} needs {len(triangles)} triangles")
        for i, tri in enumerate(triangles):
            cases[config, i] = torch.tensor(tri)
            masks[config, i] = True
    return cases, masks


def install_marching_cubes_lut(renderer: ShapERenderer) -> None:
    """Fill the renderer's (persistent) MeshDecoder LUT buffers in place."""
    cases, masks = marching_cubes_lut()
    decoder = renderer.mesh_decoder
    decoder.cases.copy_(cases.to(decoder.cases.device))
    decoder.masks.copy_(masks.to(decoder.masks.device))


class _FieldCaptured(Exception):
    """Raised from a hook to stop decoding once the SDF grid is known (marching cubes would be wasted work)."""


@torch.no_grad()
def calibrate_sdf_bias(
    pipe: ShapEPipeline,
    prompt: str = CALIBRATION_PROMPT,
    seed: int = CALIBRATION_SEED,
    quantile: float = INSIDE_QUANTILE,
) -> float:
    """Shift the SDF channel's bias so the `quantile` of the decoded field for (prompt, seed) sits at zero.

    The SDF head is the last MLP layer, which the latents never overwrite (they only project layers 0-3), so
    the shift persists for every prompt. Returns the shift applied to the pre-tanh output.
    """
    renderer = pipe.shap_e_renderer
    latents = pipe(
        prompt,
        num_inference_steps=2,
        guidance_scale=15.0,
        generator=torch.Generator().manual_seed(seed),
        output_type="latent",
    ).images
    # decode_to_mesh copies projected weights into the MLP; restore them so the saved weights stay the initial ones.
    saved = {k: v.clone() for k, v in renderer.mlp.state_dict().items()}
    captured: list[torch.Tensor] = []

    def capture(_module, args):
        captured.append(args[0])
        raise _FieldCaptured

    hook = renderer.mesh_decoder.register_forward_pre_hook(capture)
    try:
        # A coarse grid has the same field quantiles as the runner's 128^3 one at a twentieth of the cost.
        renderer.decode_to_mesh(latents[0][None], latents.device, grid_size=CALIBRATION_GRID)
    except _FieldCaptured:
        pass
    finally:
        hook.remove()
        renderer.mlp.load_state_dict(saved)
    # The decoder sees tanh(raw SDF) padded with a -1 border; tanh is monotonic, so atanh of the field's quantile
    # is the same quantile of the raw output.
    interior = captured[0][1:-1, 1:-1, 1:-1].flatten().float()
    level = float(torch.quantile(interior, quantile).clamp(-0.999999, 0.999999))
    shift = float(np.arctanh(level))
    renderer.mlp.mlp[-1].bias[0] -= shift
    return shift


def build_tiny_pipeline(seed: int = 0) -> ShapEPipeline:
    """The tiny pipeline in memory (CPU, float32), LUT installed and SDF bias calibrated.

    Weights come from a forked, seeded RNG, so builds are identical and the caller's global RNG is untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build()


def _build() -> ShapEPipeline:
    text_encoder = CLIPTextModelWithProjection(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=2,
            hidden_size=TEXT_HIDDEN,
            projection_dim=TEXT_HIDDEN,
            intermediate_size=37,
            layer_norm_eps=1e-05,
            num_attention_heads=4,
            num_hidden_layers=5,
            pad_token_id=1,
            vocab_size=1000,
        )
    )
    prior = PriorTransformer(
        num_attention_heads=2,
        attention_head_dim=16,
        embedding_dim=TIME_INPUT_DIM,
        num_embeddings=32,
        embedding_proj_dim=TEXT_HIDDEN,
        time_embed_dim=TIME_INPUT_DIM * 4,
        num_layers=1,
        clip_embed_dim=TIME_INPUT_DIM * 2,
        additional_embeddings=0,
        time_embed_act_fn="gelu",
        norm_in_type="layer",
        encoder_hid_proj_type=None,
        added_emb_type=None,
    )
    renderer = ShapERenderer(
        param_shapes=((RENDERER_DIM, 93), (RENDERER_DIM, 8), (RENDERER_DIM, 8), (RENDERER_DIM, 8)),
        d_latent=TIME_INPUT_DIM,
        d_hidden=RENDERER_DIM,
        n_output=12,
        background=(0.1, 0.1, 0.1),
    )
    scheduler = HeunDiscreteScheduler(
        beta_schedule="exp",
        num_train_timesteps=1024,
        prediction_type="sample",
        use_karras_sigmas=True,
        clip_sample=True,
        clip_sample_range=1.0,
    )
    pipe = ShapEPipeline(
        prior=prior,
        text_encoder=text_encoder,
        tokenizer=offline_clip_tokenizer(),
        scheduler=scheduler,
        shap_e_renderer=renderer,
    )
    pipe.set_progress_bar_config(disable=True)
    install_marching_cubes_lut(renderer)
    calibrate_sdf_bias(pipe)
    return pipe


def build_tiny_shap_e(path: Path) -> Path:
    """Write the tiny pipeline to `path` (created if needed) with `save_pretrained`; returns `path`."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    build_tiny_pipeline().save_pretrained(path)
    return path


def parameter_count(pipe: ShapEPipeline) -> int:
    """Parameters of every torch module in the pipeline (buffers such as the LUT excluded)."""
    return sum(p.numel() for m in pipe.components.values() if isinstance(m, torch.nn.Module) for p in m.parameters())
