"""A tiny random BLIP captioner built in the test (tokenizer included) and saved like a downloaded model."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tiny_blip, shared with tests/ui

from tiny_blip import build_tiny_blip  # noqa: E402


@pytest.fixture(scope="session")
def tiny_blip_dir(tmp_path_factory):
    """The folder of a tiny random BLIP captioning model (about 50 k parameters)."""
    return build_tiny_blip(tmp_path_factory.mktemp("tiny-blip") / "blip")


@pytest.fixture(scope="session")
def tiny_captioner(tiny_blip_dir):
    """The tiny BLIP loaded through the same code as any user's model folder."""
    from studio.caption import load_captioner

    return load_captioner(str(tiny_blip_dir), device="cpu")


@pytest.fixture
def image_folder(tmp_path):
    """Five small pictures of different sizes and modes, one in a subfolder."""
    from PIL import Image

    folder = tmp_path / "pictures"
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (40, 30), (200, 30, 30)).save(folder / "a.png")
    Image.new("RGB", (64, 64), (30, 200, 30)).save(folder / "b.jpg")
    Image.new("RGBA", (20, 50), (30, 30, 200, 128)).save(folder / "c.png")
    Image.new("L", (33, 33), 128).save(folder / "sub" / "d.png")
    Image.new("RGB", (16, 16), (0, 0, 0)).save(folder / "e.webp")
    return folder
