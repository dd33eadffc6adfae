"""The headless CLI: exit codes and messages a user sees."""
from __future__ import annotations

from pathlib import Path

import pytest

from studio.cli import EXIT_OK, EXIT_USER_ERROR, main

SEEDS = sorted((Path(__file__).parent / "config" / "seed_configs").glob("*.yaml"))


@pytest.mark.parametrize("seed_config", SEEDS, ids=[p.stem for p in SEEDS])
def test_every_seed_config_passes_check_config_with_missing_paths_as_notes(seed_config, capsys):
    assert main(["check-config", str(seed_config)]) == EXIT_OK
    out, err = capsys.readouterr()
    assert "lora_rank:" in out
    assert "valid" in err
    assert "missing path" in err and "base_model" in err


def test_check_config_names_unknown_key_and_suggestion(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("lora_rank: 8\nlerning_rate: 2e-4\n")
    assert main(["check-config", str(config)]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "lerning_rate" in err and "learning_rate" in err and "line 2" in err


def test_train_with_images_missing_captions_exits_2_and_makes_no_run_folder(tmp_path, capsys, tiny_sd_dir):
    from PIL import Image

    data = tmp_path / "data"
    data.mkdir()
    Image.new("RGB", (32, 32)).save(data / "a.png")
    Image.new("RGB", (32, 32)).save(data / "b.png")
    (data / "metadata.csv").write_text("filename,prompt\na.png,a red circle\nc.png,a blue square\n")
    out = tmp_path / "out"
    code = main(["train", "--quiet", "--set", f"train_data_dir={data}", "--set", f"base_model={tiny_sd_dir}",
                 "--set", f"output_dir={out}", "--set", "resolution=32"])
    assert code == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "b.png" in err and "c.png" in err
    assert not out.exists() or not any(out.iterdir())


def test_resume_latest_without_a_checkpoint_is_a_clear_user_error(tmp_path, capsys):
    code = main(["train", "--quiet", "--set", f"output_dir={tmp_path}", "--resume", "latest"])
    assert code == EXIT_USER_ERROR
    assert "no checkpoint" in capsys.readouterr().err


def test_graceful_stop_asks_first_interrupts_second_and_restores_the_handler(capsys):
    import os
    import signal

    from studio.cli.console import graceful_stop

    def before(_signum, _frame):
        raise AssertionError("the handler in place before must not run inside graceful_stop")

    previous = signal.signal(signal.SIGINT, before)
    try:
        with pytest.raises(KeyboardInterrupt), graceful_stop("stopping after this step") as stop:
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.is_set()
            assert "stopping after this step (Ctrl-C again to abort)" in capsys.readouterr().err
            os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is before
    finally:
        signal.signal(signal.SIGINT, previous)


def test_every_verb_returns_the_same_exit_code_values():
    from studio.cli import exits

    assert (exits.EXIT_OK, exits.EXIT_FINDINGS, exits.EXIT_USER_ERROR, exits.EXIT_FAILED, exits.EXIT_STOPPED) == (
        0, 1, 2, 3, 130)
