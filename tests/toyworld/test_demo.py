"""Demo datasets: deterministic, complete, captioned as the world captions, readable by the checker."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from studio.toyworld.checker import check_image
from studio.toyworld.demo import (
    DEMO_DATASETS, DEMO_TRIGGERS, PRIOR_DATASET, demo_scenes, write_demo_dataset, write_prior_dataset,
)
from studio.toyworld.world import BACKGROUNDS, BASE_SHAPES, COLOURS, caption


def _rows(folder):
    with open(folder / "metadata.csv", newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


@pytest.mark.parametrize("name", ["star", "striped"])
def test_demo_dataset_is_complete_and_readable(tmp_path, name):
    folder = write_demo_dataset(name, tmp_path / name, seed=0)
    rows = _rows(folder)
    assert rows[0] == ["filename", "prompt"]
    assert [r[0] for r in rows[1:]] == [f"{name}_{i:02d}.png" for i in range(20)]
    assert sorted(p.name for p in folder.glob("*.png")) == [r[0] for r in rows[1:]]
    scenes = demo_scenes(name, seed=0)
    assert [r[1] for r in rows[1:]] == [caption(s) for s in scenes]
    assert all(DEMO_TRIGGERS[name] in r[1] for r in rows[1:])
    assert {s.colour for s in scenes} == set(COLOURS) and {s.background for s in scenes} == set(BACKGROUNDS)
    assert len({round(s.size, 3) for s in scenes}) == 20 and len({(s.cx, s.cy) for s in scenes}) == 20
    if name == "striped":
        assert {s.shape for s in scenes} == set(BASE_SHAPES) and {s.style for s in scenes} == {"striped"}
    for (filename, _), scene in zip(rows[1:], scenes):
        image = Image.open(folder / filename)
        assert image.size == (32, 32) and image.mode == "RGB"
        reading = check_image(image)
        assert (reading.colour, reading.shape, reading.background) == (scene.colour, scene.shape, scene.background)
        assert reading.is_star == (name == "star") and reading.is_striped == (name == "striped")


def test_metadata_csv_is_plain_utf8_with_a_header(tmp_path):
    folder = write_demo_dataset("star", tmp_path / "star", seed=3)
    text = (folder / "metadata.csv").read_text(encoding="utf-8")
    assert text.startswith("filename,prompt\n") and "\r" not in text


def test_same_seed_same_bytes_and_rewrites_replace_old_files(tmp_path):
    first = write_demo_dataset("striped", tmp_path / "a", seed=7)
    second = write_demo_dataset("striped", tmp_path / "b", seed=7)
    other = write_demo_dataset("striped", tmp_path / "c", seed=8)
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir())
    assert all((first / n).read_bytes() == (second / n).read_bytes() for n in names)
    assert (first / "metadata.csv").read_text() != (other / "metadata.csv").read_text()
    write_prior_dataset(tmp_path / "p", n=12, seed=0)
    write_prior_dataset(tmp_path / "p", n=5, seed=0)
    assert sorted(p.name for p in (tmp_path / "p").glob("*.png")) == [f"prior_{i:02d}.png" for i in range(5)]


def test_prior_dataset_is_base_world(tmp_path):
    folder = write_prior_dataset(tmp_path / "priors", n=24, seed=1)
    rows = _rows(folder)[1:]
    assert len(rows) == 24
    assert all("zq" not in prompt for _, prompt in rows)
    for filename, prompt in rows:
        reading = check_image(Image.open(folder / filename))
        assert prompt == f"a {reading.colour} {reading.shape} on a {reading.background} background"
        assert reading.shape in BASE_SHAPES and not reading.is_striped
    with pytest.raises(ValueError):
        write_prior_dataset(tmp_path / "none", n=0)
    with pytest.raises(ValueError):
        write_demo_dataset("priors", tmp_path / "x")


def test_committed_assets_match_the_generator(tmp_path):
    """assets/demo-datasets is what ``python -m studio.toyworld.demo`` writes (pixels and captions)."""
    for name, folder in list(DEMO_DATASETS.items()) + [("priors", PRIOR_DATASET)]:
        fresh = (write_demo_dataset(name, tmp_path / name) if name != "priors"
                 else write_prior_dataset(tmp_path / name))
        assert _rows(folder) == _rows(fresh)
        for filename, _ in _rows(fresh)[1:]:
            committed = np.asarray(Image.open(folder / filename).convert("RGB"))
            assert np.array_equal(committed, np.asarray(Image.open(fresh / filename).convert("RGB")))


def test_metadata_passes_the_studio_dataset_check(tmp_path):
    from studio.data.metadata import check_dataset

    for name in DEMO_DATASETS:
        assert check_dataset(write_demo_dataset(name, tmp_path / name)) == []
