"""A tiny random BLIP captioner, built in the test and saved like a downloaded model (shared with the UI tests)."""
from __future__ import annotations

# A BERT-style vocabulary: special tokens first (ids 0-4), then words the random model may emit.
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + (
    "a an the of on in with and red blue green black white cat dog girl boy street night sky tree house car "
    "picture photo painting standing sitting"
).split()


def build_tiny_blip(folder, image_size: int = 32):
    """Save a randomly initialised BLIP (1 vision + 1 text layer, width 32) with its processor into ``folder``.

    Written with ``save_pretrained`` exactly like a real model folder (config.json, generation_config.json,
    model.safetensors, processor_config.json, tokenizer files), so loading goes through ``load_captioner``.
    """
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipProcessor
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    vocab_dir = folder.parent / f"{folder.name}-vocab"
    vocab_dir.mkdir(parents=True, exist_ok=True)
    (vocab_dir / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer.from_pretrained(str(vocab_dir))  # transformers 5 ignores vocab_file=: load the folder
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    processor = BlipProcessor(BlipImageProcessorPil(size={"height": image_size, "width": image_size}), tokenizer)
    text = dict(vocab_size=len(tokenizer), hidden_size=32, encoder_hidden_size=32, intermediate_size=64,
                num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=64, projection_dim=32,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.sep_token_id,
                pad_token_id=tokenizer.pad_token_id, sep_token_id=tokenizer.sep_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  image_size=image_size, patch_size=16, projection_dim=32, initializer_range=0.02)
    config = BlipConfig(text_config=text, vision_config=vision, projection_dim=32, image_text_hidden_size=32)
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
