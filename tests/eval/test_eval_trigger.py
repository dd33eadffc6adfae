"""The trigger goes into a prompt where the training captions had it, and the grid shows the prompt it drew."""
from __future__ import annotations

import json
import shutil

from studio.eval import GridSpec, render_grid, write_evaluation
from studio.eval.prompts import prompt_rows
from studio.eval.trigger import learn_placement, placement_for
from studio.util.fs import atomic_write_text

STAR_CAPTIONS = ["a red zq star on a white background", "a blue zq star on a black background"]


def test_eval_trigger_goes_before_the_class_word_the_captions_put_it_before():
    placement = learn_placement(STAR_CAPTIONS, "zq", "star/metadata.csv")
    assert placement.insert("a blue star on a black background", "zq") == "a blue zq star on a black background"
    assert placement.insert("a Blue Star", "zq") == "a Blue zq Star"
    assert placement.insert("a red zq star", "zq") == "a red zq star"  # already there: as written
    assert placement.insert("a star <lora:star:0.5>", "zq") == "a zq star <lora:star:0.5>"
    assert placement.insert("a red circle", "zq") == "zq, a red circle"  # no class word: at the start
    assert "right before \"star\", as in 2 of the 2 training captions" in placement.describe("zq")
    rows = prompt_rows(["a blue star on a black background"], "zq", placement)
    assert rows == [("a blue zq star on a black background", True), ("a blue star on a black background", False)]


def test_eval_trigger_at_the_start_or_end_as_the_captions_have_it():
    start = learn_placement(["zq a photo of a dog", "zq a dog in snow", "a zq dog"], "zq")
    assert start.insert("a cat on a sofa", "zq") == "zq a cat on a sofa"
    comma = learn_placement(["ink style, a castle", "ink style, a boat"], "ink style")
    assert comma.insert("a bridge", "ink style") == "ink style, a bridge"
    end = learn_placement(["a castle, mystyle", "a boat, mystyle"], "mystyle")
    assert end.insert("a bridge at night", "mystyle") == "a bridge at night, mystyle"
    striped = learn_placement(["a red circle on a gray background in zq striped style"], "zq")
    assert striped.insert("a blue square in striped style", "zq") == "a blue square in zq striped style"
    assert learn_placement(["a dog"], "zq").insert("a cat", "zq") == "zq, a cat"  # nothing learned
    assert learn_placement(STAR_CAPTIONS, "zq star").insert("a blue star", "zq star") == "a blue zq star"


def _run_with_captions(trained_run, tmp_path, captions):
    """A copy of the tiny run whose config points at a dataset with ``captions``."""
    run = tmp_path / trained_run.name
    shutil.copytree(trained_run, run)
    data = tmp_path / "data"
    data.mkdir()
    atomic_write_text(data / "metadata.csv", "filename,prompt\n" + "".join(
        f"img_{i}.png,{caption}\n" for i, caption in enumerate(captions)))
    config = (run / "config.yaml").read_text()
    old_dir = next(line for line in config.splitlines() if line.startswith("train_data_dir:"))
    atomic_write_text(run / "config.yaml", config.replace(old_dir, f"train_data_dir: {data}"))
    return run, data


def test_eval_grid_draws_the_trigger_where_training_put_it_and_shows_the_prompt_drawn(trained_run, tmp_path,
                                                                                      pipeline_cache):
    run, data = _run_with_captions(trained_run, tmp_path, STAR_CAPTIONS * 3)
    placement = placement_for("zq", run, run / "pytorch_lora_weights.safetensors")
    assert (placement.where, placement.word, placement.votes, placement.source) == (
        "before", "star", 6, str(data / "metadata.csv"))
    spec = GridSpec(lora=str(run), prompts=["a blue star on a black background"], seeds=[0], weights=[1.0],
                    steps=2, trigger="zq")
    result = render_grid(spec, tmp_path / "grid", pipeline_cache=pipeline_cache)
    index = json.loads(result.index_json.read_text())
    drawn = [(row["prompt"], row["trigger"]) for row in index["rows"]]
    assert drawn == [("a blue zq star on a black background", True), ("a blue star on a black background", False)]
    assert index["rows"][0]["label"][0] == "a blue zq star on a black background"  # the grid's row label
    assert "right before \"star\"" in result.metrics["trigger_placement"]
    report = write_evaluation(run, result).read_text()
    drawn_section = report.split("## Prompts drawn")[1].split("##")[0]
    assert "- `a blue zq star on a black background`" in drawn_section
    assert "as in 6 of the 6 training captions" in drawn_section
