"""A tiny, randomly initialised HY-Motion download for tests and GPU smoke runs: NOT a model, its motions mean nothing.

`build_tiny_hy_motion(path)` writes the layout upstream's `ckpts/README.md` documents, at toy widths:

    path/HY-Motion-1.0/config.yml     the real keys (network_module[_args], train_pipeline[_args]) at tiny sizes
    path/HY-Motion-1.0/latest.ckpt    torch.save({"model_state_dict": ..., "epoch", "global_step"}): the DiT under
                                      `motion_transformer.`, null/special-game features, latent mean/std (201,)
    path/Qwen3-8B/                    a 1-layer Qwen3ForCausalLM + byte-level tokenizer with a ChatML template
    path/clip-vit-large-patch14/      a 32-wide CLIPTextModel + the offline byte-level CLIP tokenizer

so `hy_motion.load(path)` goes through exactly the code that loads the real release. The DiT's weights are drawn at
a scale that makes every block matter (upstream zero-initialises the adaLN linears for training, which would turn a
random model into a constant); the latent mean puts every joint at the rest pose with small random deviations, so
the decoded clip is a plausible twitching T-pose rather than arbitrary rotations.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

from inference.runners.hy_motion import CKPT_NAME, CLIP_DIR, CONFIG_NAME, MOTION_DIM, QWEN_DIR, HunyuanMotionMMDiT
from inference.runners.tiny_shap_e import offline_clip_tokenizer

VARIANT = "HY-Motion-1.0"
LLM_HIDDEN = 32
CLIP_HIDDEN = 32
TINY_NETWORK_ARGS = {
    "input_dim": MOTION_DIM,
    "feat_dim": 32,
    "ctxt_input_dim": LLM_HIDDEN,
    "vtxt_input_dim": CLIP_HIDDEN,
    "num_layers": 3,  # one double-stream and two single-stream blocks
    "num_heads": 2,
    "mlp_ratio": 4.0,
    "dropout": 0.0,
    "mask_mode": "narrowband",
    "apply_rope_to_single_branch": False,
    "time_factor": 1000.0,
}
TINY_STEPS = 4
TINY_TRAIN_FRAMES = 120
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def tiny_config() -> dict:
    """config.yml as upstream's T2MRuntime reads it, with toy sizes and few sampling steps."""
    return {
        "network_module": "hymotion/network/hymotion_mmdit.HunyuanMotionMMDiT",
        "network_module_args": dict(TINY_NETWORK_ARGS),
        "train_pipeline": "hymotion/pipeline/motion_diffusion.MotionFlowMatching",
        "train_pipeline_args": {
            "text_encoder_module": "hymotion/network/text_encoders/text_encoder.HYTextModel",
            "text_encoder_cfg": {"llm_type": "qwen3", "max_length_llm": 16},
            "noise_scheduler_cfg": {"method": "euler"},
            "infer_noise_scheduler_cfg": {"validation_steps": TINY_STEPS},
            "test_cfg": {"text_guidance_scale": 5.0, "mean_std_dir": "./stats/"},
            "train_frames": TINY_TRAIN_FRAMES,
            "output_mesh_fps": 30,
            "enable_ctxt_null_feat": True,
            "random_generator_on_gpu": True,
        },
    }


def tiny_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """The checkpoint's `model_state_dict`: random DiT weights, null features and rest-pose-centred statistics."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = HunyuanMotionMMDiT(**TINY_NETWORK_ARGS)
        for name, p in net.named_parameters():
            with torch.no_grad():
                if name.endswith("norm.weight") or "norm1" in name or "norm2" in name or name.endswith("_norm.weight"):
                    p.fill_(1.0)
                else:
                    p.normal_(0.0, 0.2)
        state = {f"motion_transformer.{k}": v.clone() for k, v in net.state_dict().items()}
        for name, dim in (("vtxt", CLIP_HIDDEN), ("ctxt", LLM_HIDDEN)):
            key = "null_vtxt_feat" if name == "vtxt" else "null_ctxt_input"
            state[key] = torch.randn(1, 1, dim)
            state[f"special_game_{name}_feat"] = torch.randn(1, 1, dim)
        mean = torch.zeros(MOTION_DIM)
        mean[3:135] = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]).repeat(22)  # identity 6D rotations
        std = torch.full((MOTION_DIM,), 0.05)
        std[0:3] = 0.02
        state["mean"], state["std"] = mean, std
    return state


def byte_chatml_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with no merges (every byte a token) and Qwen's ChatML special tokens."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        model_max_length=1024,
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_hy_motion(path: Path, seed: int = 0) -> Path:
    """Write the tiny download under `path` (about 0.3 MB) and return `path`."""
    path = Path(path)
    ckpt_dir = path / VARIANT
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    (ckpt_dir / CONFIG_NAME).write_text(yaml.safe_dump(tiny_config(), sort_keys=False), encoding="utf-8")
    torch.save({"model_state_dict": tiny_state_dict(seed), "epoch": 0, "global_step": 0}, ckpt_dir / CKPT_NAME)
    stats = ckpt_dir.parent / "stats"  # upstream ships stats/Mean.npy, Std.npy beside the code as well
    stats.mkdir(exist_ok=True)
    state = tiny_state_dict(seed)
    np.save(stats / "Mean.npy", state["mean"].numpy())
    np.save(stats / "Std.npy", state["std"].numpy())

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        tokenizer = byte_chatml_tokenizer()
        qwen = Qwen3ForCausalLM(
            Qwen3Config(
                vocab_size=len(tokenizer),
                hidden_size=LLM_HIDDEN,
                intermediate_size=64,
                num_hidden_layers=1,
                num_attention_heads=2,
                num_key_value_heads=1,
                head_dim=16,
                max_position_embeddings=1024,
                tie_word_embeddings=True,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        )
        qwen.save_pretrained(path / QWEN_DIR)
        tokenizer.save_pretrained(path / QWEN_DIR)
        clip = CLIPTextModel(
            CLIPTextConfig(
                bos_token_id=0,
                eos_token_id=2,
                pad_token_id=1,
                hidden_size=CLIP_HIDDEN,
                projection_dim=CLIP_HIDDEN,
                intermediate_size=37,
                num_attention_heads=4,
                num_hidden_layers=2,
                vocab_size=1000,
            )
        )
        clip.save_pretrained(path / CLIP_DIR)
        offline_clip_tokenizer().save_pretrained(path / CLIP_DIR)
    return path
