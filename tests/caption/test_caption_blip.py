"""BLIP captioning with a tiny random model: loading errors, batching, progress, cancel, folder captioning.

A random model writes gibberish, so the tests check structure (one caption per image, the template applied, the
same captions batched and one at a time), never content.
"""
from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from studio.caption import CaptionModelError, caption_folder, list_images, load_captioner
from studio.data import DatasetError


def _images(count):
    return [Image.new("RGB", (24 + 5 * i, 40), (40 * i % 256, 90, 200 - 30 * i % 200)) for i in range(count)]


def test_loads_from_folder_on_cpu_in_float32(tiny_captioner, tiny_blip_dir):
    import torch

    assert tiny_captioner.device == "cpu" and tiny_captioner.dtype == torch.float32
    assert tiny_captioner.source == str(tiny_blip_dir)


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_half_precision_path_runs(tiny_blip_dir, precision):
    import torch

    captioner = load_captioner(str(tiny_blip_dir), device="cpu", dtype=precision)
    assert captioner.dtype == getattr(torch, precision)
    assert next(captioner.model.parameters()).dtype == captioner.dtype
    assert len(captioner.caption(_images(3), batch_size=2, max_new_tokens=4)) == 3


def test_auto_device_and_precision(monkeypatch):
    import torch

    from studio.caption import blip

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert blip._pick_device("auto") == "cuda" and blip._pick_dtype("auto", "cuda") == torch.float16
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert blip._pick_device("auto") == "mps" and blip._pick_dtype("auto", "mps") == torch.float16
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert blip._pick_device("auto") == "cpu" and blip._pick_dtype("auto", "cpu") == torch.float32
    assert blip._pick_device("cuda:1") == "cuda:1" and blip._pick_dtype("bf16", "cpu") == torch.bfloat16


def test_one_caption_per_image_and_batched_equals_one_at_a_time(tiny_captioner):
    images = _images(5) + [Image.new("L", (30, 30), 70)]
    batched = tiny_captioner.caption(images, batch_size=4, max_new_tokens=8)
    single = tiny_captioner.caption(images, batch_size=1, max_new_tokens=8)
    assert len(batched) == 6 and all(isinstance(text, str) and text for text in batched)
    assert batched == single
    assert tiny_captioner.caption([], batch_size=4) == []


def test_prompt_starts_every_caption(tiny_captioner):
    captions = tiny_captioner.caption(_images(3), batch_size=2, max_new_tokens=5, prompt="a picture of")
    assert all(text.startswith("a picture of") for text in captions)


def test_progress_after_each_batch_and_cancel_between_batches(tiny_captioner):
    calls = []
    tiny_captioner.caption(_images(5), batch_size=2, max_new_tokens=3, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(2, 5), (4, 5), (5, 5)]
    stopped = tiny_captioner.caption(_images(5), batch_size=2, max_new_tokens=3,
                                     should_stop=lambda: len(calls) >= 4, progress=lambda d, t: calls.append(d))
    assert len(stopped) == 2


def test_caption_folder_applies_template_prefix_suffix(tiny_captioner, image_folder):
    records = caption_folder(image_folder, tiny_captioner, template="**{caption}**, high quality", prefix="zq",
                             suffix="watercolor", batch_size=2, skip={"e.webp"})
    assert [r.filename for r in records] == ["a.png", "b.jpg", "c.png", "sub/d.png"]
    for record in records:
        assert record.prompt.startswith("zq, **") and record.prompt.endswith("**, high quality, watercolor")


def test_caption_folder_reports_every_broken_image_before_captioning(tiny_captioner, image_folder):
    (image_folder / "broken.png").write_bytes(b"not a png")
    (image_folder / "sub" / "half.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(DatasetError) as info:
        caption_folder(image_folder, tiny_captioner, should_stop=lambda: pytest.fail("captioning started"))
    assert "broken.png" in str(info.value) and "half.jpg" in str(info.value)


def test_caption_folder_bad_template_fails_first(tiny_captioner, image_folder):
    with pytest.raises(ValueError, match=r"\{caption\}"):
        caption_folder(image_folder, tiny_captioner, template="no field")


def test_list_images_skips_hidden_and_non_images(image_folder):
    (image_folder / ".hidden.png").write_bytes(b"x")
    (image_folder / "notes.txt").write_text("x")
    assert list_images(image_folder) == ["a.png", "b.jpg", "c.png", "e.webp", "sub/d.png"]


def test_offline_hub_id_gives_one_clear_sentence():
    with pytest.raises(CaptionModelError) as info:
        load_captioner("lora-studio-tests/no-such-blip", device="cpu")
    message = str(info.value)
    assert message.startswith("No BLIP model here") and "hf download" in message and "--model" in message
    assert "\n" not in message


def test_hub_id_without_network_fails_at_once_instead_of_retrying(monkeypatch):
    from studio.caption import blip

    monkeypatch.setattr(blip, "_offline", lambda: False)
    monkeypatch.setattr(blip, "_hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(blip, "_from_pretrained", _only_from_cache)
    with pytest.raises(CaptionModelError, match="No BLIP model here"):
        load_captioner("", device="cpu")


def _only_from_cache(source, dtype, local_only):
    assert local_only, "went to the network although the hub is unreachable"
    raise OSError(f"{source} is not in the cache")


def test_missing_folder_wrong_model_and_missing_processor(tmp_path, tiny_blip_dir):
    with pytest.raises(CaptionModelError, match="does not exist"):
        load_captioner(str(tmp_path / "nowhere" / "blip"))
    with pytest.raises(CaptionModelError, match="no config.json"):
        load_captioner(str(tmp_path))
    clip = tmp_path / "clip"
    clip.mkdir()
    (clip / "config.json").write_text(json.dumps({"model_type": "clip"}))
    with pytest.raises(CaptionModelError, match="clip model, not BLIP"):
        load_captioner(str(clip))
    partial = shutil.copytree(tiny_blip_dir, tmp_path / "partial")
    (partial / "processor_config.json").unlink()
    with pytest.raises(CaptionModelError, match="processor_config.json"):
        load_captioner(str(partial))
    with pytest.raises(CaptionModelError, match="precision"):
        load_captioner(str(tiny_blip_dir), dtype="int3")
