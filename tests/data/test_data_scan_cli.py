"""``studio.py scan``: exit codes, the JSON report and --prepare, run in-process."""
from __future__ import annotations

import pytest

from studio.app.datasets import DEMO_ROOT
from studio.cli import main
from studio.data.scan import ScanReport
from studio.data.synthetic import synthetic_image


@pytest.fixture
def folder(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for seed in range(2):
        synthetic_image(seed, (160, 120)).save(data / f"{seed}.png")
    (data / "metadata.csv").write_text("filename,prompt\n0.png,a first picture\n1.png,a second picture\n")
    return data


def test_clean_folder_exits_0_and_writes_the_json_report(folder, tmp_path, capsys):
    report_path = tmp_path / "report.json"
    assert main(["scan", str(folder), "--resolution", "100", "--json", str(report_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "All 2 images are ready" in out
    report = ScanReport.from_json(report_path.read_text())
    assert [image.relpath for image in report.images] == ["0.png", "1.png"]


def test_flags_are_listed_and_errors_exit_1(folder, capsys):
    data = (folder / "0.png").read_bytes()
    (folder / "broken.png").write_bytes(data[: len(data) // 2])
    assert main(["scan", str(folder), "--workers", "1"]) == 1
    captured = capsys.readouterr()
    assert "0.png: [small]" in captured.out and "broken.png" in captured.err and "corrupt" in captured.out


def test_prepare_writes_the_kept_images(folder, tmp_path, capsys):
    out = tmp_path / "prepared"
    code = main(["scan", str(folder), "--prepare", str(out), "--keep-flagged", "--upscale", "--target-side", "128",
                 "--quiet", "--workers", "1"])
    assert code == 0 and sorted(path.name for path in out.glob("*.png")) == ["0.png", "1.png"]
    assert "Wrote 2 image(s)" in capsys.readouterr().out


def test_exit_1_when_no_picture_is_ready_and_0_at_the_resolution_the_model_trains_at(capsys):
    """The star demo is 32 px: not ready for a 512 px training (exit 1), ready for the toy world's 32 px."""
    assert main(["scan", str(DEMO_ROOT / "star"), "--quiet", "--workers", "1"]) == 1
    assert "0 of 20 images are ready; 20 too small" in capsys.readouterr().out
    assert main(["scan", str(DEMO_ROOT / "star"), "--resolution", "32", "--quiet", "--workers", "1"]) == 0
    assert "All 20 images are ready for training" in capsys.readouterr().out


def test_missing_captions_need_action_and_a_prepare_that_writes_nothing_exits_1(folder, tmp_path, capsys):
    (folder / "metadata.csv").unlink()
    assert main(["scan", str(folder), "--resolution", "100", "--quiet", "--workers", "1"]) == 1
    assert "no metadata.csv yet" in capsys.readouterr().out
    out = tmp_path / "prepared"
    assert main(["scan", str(folder), "--prepare", str(out), "--quiet", "--workers", "1"]) == 1
    printed = capsys.readouterr().out
    assert "Wrote no images" in printed and "all 2 were left out" in printed and "Wrote 0" not in printed


def test_bad_usage_exits_2(folder, tmp_path, capsys):
    assert main(["scan", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["scan", str(folder), "--prepare", str(folder / "out"), "--quiet", "--workers", "1"]) == 2
    assert "inside the dataset folder" in capsys.readouterr().err
    assert main(["scan", str(folder), "--workers", "0"]) == 2
    assert main(["scan", str(folder), "--resolution", "0"]) == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["scan", str(folder), "--resolution", "big"])
    assert exit_info.value.code == 2
