"""``studio.py grid`` and ``studio.py evaluate``: files written, exit codes and messages."""
from __future__ import annotations

import json
import shutil

from studio.cli import COMMAND_MODULES, EXIT_OK, EXIT_USER_ERROR, main


def test_eval_cli_grid_writes_grid_png_cells_and_index(trained_run, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["grid", "--lora", str(trained_run), "--prompt", "a red zq star on a white background",
                 "--prompt", "a blue circle <lora:tiny:0.2>", "--weights", "0.4:0.8:0.2", "--seeds", "0,1",
                 "--steps", "2", "--sampler", "Euler", "--reference", "--quiet", "--out", str(out),
                 "--lora-dir", str(trained_run.parent)])
    assert code == EXIT_OK, capsys.readouterr().err
    assert "studio.cli.evaluate" in COMMAND_MODULES
    assert (out / "grid.png").is_file()
    assert len(list((out / "cells").glob("*.png"))) == 4 * 4
    index = json.loads((out / "grid.json").read_text())
    assert index["weights"] == [0.0, 0.4, 0.6, 0.8]
    assert index["spec"]["sampler"] == "Euler" and index["spec"]["seeds"] == [0, 1]
    assert {"prompt", "seed", "weight", "checkpoint", "path", "metrics"} <= set(index["cells"][0])
    assert "change from weight 0:" in capsys.readouterr().out


def test_eval_cli_grid_user_errors_exit_2(trained_run, tmp_path, capsys):
    assert main(["grid", "--lora", str(tmp_path / "nope"), "--prompt", "x", "--out", str(tmp_path)]) == EXIT_USER_ERROR
    assert "no LoRA" in capsys.readouterr().err
    code = main(["grid", "--lora", str(trained_run), "--prompt", "x", "--weights", "0.9:0.4:0.1",
                 "--out", str(tmp_path)])
    assert code == EXIT_USER_ERROR and "start:stop:step" in capsys.readouterr().err
    code = main(["grid", "--lora", str(trained_run), "--prompt", "x", "--sampler", "k_lms9", "--out", str(tmp_path)])
    assert code == EXIT_USER_ERROR and "DPM++ 2M" in capsys.readouterr().err
    assert not (tmp_path / "grid.png").exists()


def test_eval_cli_evaluate_writes_evaluation_md_into_the_run(trained_run, tmp_path, capsys):
    run = tmp_path / trained_run.name
    shutil.copytree(trained_run, run)
    code = main(["evaluate", str(run), "--weights", "0.5,1", "--seeds", "0,1", "--steps", "2", "--quiet"])
    assert code == EXIT_OK, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "recommended weight:" in out and "best checkpoint:" in out
    text = (run / "evaluation.md").read_text()
    assert "## Verdict" in text and "Best checkpoint:" in text and "![grid](evaluation/grid.png)" in text
    index = json.loads((run / "evaluation" / "grid.json").read_text())
    assert [r["checkpoint"] for r in index["rows"]][::4] == ["step 10", "step 20", "final"]
    assert main(["evaluate", str(tmp_path / "empty-dir")]) == EXIT_USER_ERROR
    assert "not a training run folder" in capsys.readouterr().err
