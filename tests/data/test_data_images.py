"""Image loading: orientation, colour modes, tensors, unreadable files."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from studio.data import BucketBatchSampler, CaptionRecord, DatasetError, TrainingImages, collate, load_rgb


def _upright_tall():
    """10x20, red top half, blue bottom half."""
    image = Image.new("RGB", (10, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 10, 10))
    return image


@pytest.mark.parametrize("name", ["photo.jpg", "photo.tif", "photo.png", "photo.webp"])
def test_exif_rotated_image_comes_out_upright(tmp_path, name):
    stored = _upright_tall().transpose(Image.Transpose.ROTATE_90)  # sideways on disk: 20x10
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    stored.save(tmp_path / name, exif=exif.tobytes(), quality=95)
    data = TrainingImages(tmp_path, [CaptionRecord(name, "a photo")], resolution=32)
    assert data.sizes == [(10, 20)] and data.bucket_of_index == [(24, 40)]
    pixels = data[0]["pixel_values"]
    assert pixels.shape == (3, 40, 24)
    top, bottom = pixels[:, 5, 12], pixels[:, 35, 12]
    assert top[0] > 0.8 and top[2] < -0.8 and bottom[2] > 0.8 and bottom[0] < -0.8


def test_transparency_composited_on_white_and_modes_converted(tmp_path):
    rgba = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (8, 0, 16, 16))
    rgba.save(tmp_path / "rgba.png")
    out = np.asarray(load_rgb(tmp_path / "rgba.png"))
    assert out.shape == (16, 16, 3) and (out[:, :8] == 255).all() and (out[:, 8:] == (0, 0, 255)).all()

    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.putpixel((0, 0), 1)
    palette.save(tmp_path / "p.png", transparency=0)
    out = np.asarray(load_rgb(tmp_path / "p.png"))
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[3, 3]) == (255, 255, 255)

    Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16)).save(tmp_path / "deep.png")
    Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16)).save(tmp_path / "mid.png")
    assert (np.asarray(load_rgb(tmp_path / "deep.png")) == 255).all()
    assert abs(int(np.asarray(load_rgb(tmp_path / "mid.png"))[0, 0, 0]) - 128) <= 1

    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    Image.new("L", (4, 4), 128).save(tmp_path / "grey.bmp")
    assert load_rgb(tmp_path / "cmyk.jpg").mode == "RGB" and load_rgb(tmp_path / "grey.bmp").mode == "RGB"


def test_unreadable_images_listed_together(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (tmp_path / "text.jpg").write_text("hello")
    records = [CaptionRecord(n, "x") for n in ("good.png", "broken.png", "text.jpg", "../out.png")]
    with pytest.raises(DatasetError) as caught:
        TrainingImages(tmp_path, records, resolution=32)
    paths = [p.path for p in caught.value.problems]
    assert len(paths) == 3
    assert any(p.endswith("broken.png") for p in paths) and any(p.endswith("text.jpg") for p in paths)
    assert any(p.endswith("out.png") for p in paths)


def test_loader_batches_single_bucket_tensors_and_deterministic_flips(tmp_path):
    sizes = {"wide.png": (60, 30), "tall.png": (30, 60), "sq1.png": (40, 40), "sq2.png": (50, 50)}
    for name, size in sizes.items():
        image = Image.new("RGB", size, "white")
        image.paste((255, 0, 0), (0, 0, size[0] // 2, size[1]))  # red left half shows flips
        image.save(tmp_path / name)
    records = [CaptionRecord(name, f"caption {name}") for name in sizes]
    data = TrainingImages(tmp_path, records, resolution=32, random_flip=True, seed=3)
    item = data[2]
    assert item["pixel_values"].dtype == torch.float32 and item["bucket"] == (32, 32) and item["index"] == 2
    assert -1.0 <= float(item["pixel_values"].min()) and float(item["pixel_values"].max()) <= 1.0
    sampler = BucketBatchSampler(data.bucket_of_index, batch_size=2, seed=3)
    loader = torch.utils.data.DataLoader(data, batch_sampler=sampler, collate_fn=collate)
    batches = list(loader)
    assert sum(len(b["indices"]) for b in batches) == 4
    for batch in batches:
        w, h = batch["bucket"]
        assert batch["pixel_values"].shape == (len(batch["indices"]), 3, h, w)
        assert batch["captions"] == [f"caption {records[i].filename}" for i in batch["indices"]]
    flips = [[data.is_flipped(i, epoch) for i in range(4)] for epoch in range(6)]
    assert flips == [[data.is_flipped(i, epoch) for i in range(4)] for epoch in range(6)]
    assert any(any(row) for row in flips) and not all(all(row) for row in flips)
    epoch, index = next((e, i) for e in range(6) for i in range(4) if flips[e][i])
    data.set_epoch(epoch)
    green = data[index]["pixel_values"][1]  # red pixels have green -1, white pixels +1
    assert green[:, 0].mean() > 0.5 and green[:, -1].mean() < -0.5  # flipped: the red half moved to the right
    unflipped = TrainingImages(tmp_path, records, resolution=32, bucketing=False)
    assert unflipped.bucket_of_index == [(32, 32)] * 4 and unflipped[index]["pixel_values"][1, :, 0].mean() < -0.5


def test_dataset_error_survives_pickling_and_worker_reraise(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"nope")
    with pytest.raises(DatasetError) as caught:
        TrainingImages(tmp_path, [CaptionRecord("bad.png", "x")], resolution=32)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert copy.problems == caught.value.problems and str(copy) == str(caught.value)
    assert str(DatasetError(str(caught.value))) == str(caught.value)
