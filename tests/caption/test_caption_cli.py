"""``studio.py caption`` and ``studio.py lint`` through the CLI entry point."""
from __future__ import annotations

import json

from studio.cli import EXIT_OK, EXIT_USER_ERROR, main
from studio.data import read_metadata

EXIT_LINT_ERRORS = 1


def test_caption_folder_through_cli_writes_valid_metadata(tiny_blip_dir, image_folder, capsys):
    output = image_folder / "metadata.csv"
    code = main(["caption", "--input", str(image_folder), "--output", str(output), "--model", str(tiny_blip_dir),
                 "--template", "**{caption}**, high quality, detailed", "--prefix", "zq", "--batch-size", "2",
                 "--quiet"])
    assert code == EXIT_OK, capsys.readouterr().err
    table = read_metadata(output, image_folder)
    assert table.problems == [] and table.has_header
    assert [r.filename for r in table.records] == ["a.png", "b.jpg", "c.png", "e.webp", "sub/d.png"]
    assert all(r.prompt.startswith("zq, **") and r.prompt.endswith("**, high quality, detailed")
               for r in table.records)
    assert "wrote 5 caption(s)" in capsys.readouterr().out


def test_caption_refuses_to_overwrite_then_missing_only_keeps_rows(tiny_blip_dir, image_folder, capsys):
    output = image_folder / "metadata.csv"
    output.write_text('filename,prompt\na.png,"my own caption, kept"\n')
    args = ["caption", "--input", str(image_folder), "--output", str(output), "--model", str(tiny_blip_dir), "--quiet"]
    assert main(args) == EXIT_USER_ERROR
    assert "--missing-only" in capsys.readouterr().err
    assert main(args + ["--missing-only"]) == EXIT_OK
    records = read_metadata(output, image_folder).records
    assert records[0].prompt == "my own caption, kept" and len(records) == 5
    assert main(args + ["--missing-only"]) == EXIT_OK  # nothing left to caption
    assert "every image has a row" in capsys.readouterr().err


def test_caption_without_a_model_is_a_user_error(tmp_path, image_folder, capsys):
    code = main(["caption", "--input", str(image_folder), "--output", str(tmp_path / "m.csv"),
                 "--model", "lora-studio-tests/no-such-blip"])
    assert code == EXIT_USER_ERROR
    assert "No BLIP model here" in capsys.readouterr().err and not (tmp_path / "m.csv").exists()


def test_lint_exit_codes_text_and_json(tmp_path, capsys):
    clean = tmp_path / "clean.csv"
    clean.write_text('filename,prompt\na.png,"zq, a red cat, sofa"\nb.png,"zq, a beautiful dog"\n')
    assert main(["lint", str(clean), "--required", "zq"]) == EXIT_OK  # a warning only
    out, err = capsys.readouterr()
    assert "b.png" in out and "[subjective]" in out and "'beautiful'" in out
    assert "0 error(s), 1 warning(s)" in err and "SD 1.x CLIP tokenizer" in err

    bad = tmp_path / "bad.csv"
    bad.write_text('a.png,"(red eyes:1.3, cat"\nb.png,女孩\n')
    assert main(["lint", str(bad), "--json", "--required", "zq"]) == EXIT_LINT_ERRORS
    report = json.loads(capsys.readouterr().out)
    assert report["errors"] >= 3 and report["exact_token_count"] is True
    rules = {(f["filename"], f["rule"]) for f in report["findings"]}
    assert {("a.png", "bad_weighting"), ("b.png", "non_english"), ("a.png", "missing_keyword")} <= rules
    assert any(f["words"] == ["女孩"] for f in report["findings"])


def test_lint_synonyms_chart_and_unreadable_file(tmp_path, capsys):
    csv_path = tmp_path / "metadata.csv"
    csv_path.write_text("filename,prompt\na.png,\"**kitten**, sofa\"\nb.png,\"cat, sofa\"\nc.png,\"cat, bed\"\n")
    chart = tmp_path / "chart.png"
    assert main(["lint", str(csv_path), "--synonyms", "cat,kitten", "--chart", str(chart)]) == EXIT_OK
    assert "[inconsistent_terms]" in capsys.readouterr().out
    assert chart.read_bytes().startswith(b"\x89PNG")
    assert main(["lint", str(tmp_path / "missing.csv")]) == EXIT_USER_ERROR
    assert "does not exist" in capsys.readouterr().err
    assert main(["lint", str(csv_path), "--tokenizer-model", str(tmp_path)]) == EXIT_USER_ERROR
    assert "no CLIP tokenizer" in capsys.readouterr().err


def test_ctrl_c_writes_what_is_captioned_and_missing_only_finishes(tiny_blip_dir, image_folder, monkeypatch, capsys):
    import os
    import signal

    from studio.cli import EXIT_STOPPED
    from studio.cli.console import CountBar

    original = CountBar.__call__

    def interrupt_after_first_batch(self, done, total):
        original(self, done, total)
        if done == 2:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(CountBar, "__call__", interrupt_after_first_batch)
    output = image_folder / "metadata.csv"
    args = ["caption", "--input", str(image_folder), "--output", str(output), "--model", str(tiny_blip_dir),
            "--batch-size", "2", "--quiet"]
    assert main(args) == EXIT_STOPPED
    assert "--missing-only" in capsys.readouterr().err
    assert [r.filename for r in read_metadata(output).records] == ["a.png", "b.jpg"]
    monkeypatch.setattr(CountBar, "__call__", original)
    assert main(args + ["--missing-only"]) == EXIT_OK
    assert read_metadata(output, image_folder).problems == []
