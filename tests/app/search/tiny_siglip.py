"""A tiny random SigLIP checkpoint built offline, for tests of the real loading and encoding code."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import (
    PreTrainedTokenizerFast,
    SiglipConfig,
    SiglipImageProcessor,
    SiglipModel,
    SiglipProcessor,
    SiglipTextConfig,
    SiglipVisionConfig,
)

TINY_DIM = 32
TINY_MAX_LENGTH = 16
WORDS = (
    "a an the of with and photo render model low poly red green blue white black wooden metal stone chair table "
    "sword shield house tree car robot cat dog dragon castle lamp"
).split()


def make_tiny_siglip(path: Path) -> Path:
    """Write a random SigLIP (32-d, 2 layers, 32x32 images) with a word-level tokenizer into `path`; returns it.

    Every call writes the same weights (torch.manual_seed(0)). The tokenizer mimics SigLIP's: lowercase, an EOS
    appended, only input_ids (no attention mask), padded with [PAD] to model_max_length.
    """
    path.mkdir(parents=True, exist_ok=True)
    vocab = {"[PAD]": 0, "[UNK]": 1, "[EOS]": 2}
    for word in WORDS:
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="$A [EOS]", special_tokens=[("[EOS]", 2)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        eos_token="[EOS]",
        model_max_length=TINY_MAX_LENGTH,
        model_input_names=["input_ids"],
    )
    tower = {"hidden_size": TINY_DIM, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 2}
    config = SiglipConfig(
        text_config=SiglipTextConfig(
            vocab_size=len(vocab),
            max_position_embeddings=TINY_MAX_LENGTH,
            pad_token_id=0,
            bos_token_id=None,
            eos_token_id=2,
            **tower,
        ).to_dict(),
        vision_config=SiglipVisionConfig(image_size=32, patch_size=8, **tower).to_dict(),
    )
    torch.manual_seed(0)
    SiglipModel(config).save_pretrained(path)
    image_processor = SiglipImageProcessor(size={"height": 32, "width": 32})
    SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    return path
