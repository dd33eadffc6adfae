"""The Evaluation tab's text: checkpoint names, the concept-rate table and the report shown on the page (read in
Chromium on a trained demo by test_ui_first_hour)."""
from __future__ import annotations

from studio.app import Studio
from studio.ui.evaluation_tab import metrics_markdown, rate_table, report_for_page, run_details


def test_checkpoint_dropdown_shows_short_names_and_hands_over_full_paths(tmp_path):
    run = tmp_path / "workspace" / "output" / "demo-star" / "demo-star-20260101-120000"
    for step in (250, 500):
        folder = run / "checkpoints" / f"step-{step:06d}"
        folder.mkdir(parents=True)
        (folder / "trainer_state.json").write_text("{}")
        (folder / "pytorch_lora_weights.safetensors").write_bytes(b"")
    (run / "config.yaml").write_text("trigger_word: zq\n")
    (run / "pytorch_lora_weights.safetensors").write_bytes(b"")
    checkpoints, trigger, sampler, guidance = run_details(Studio(tmp_path / "workspace"), run.name)
    assert checkpoints["choices"][:3] == [
        ("final", "final"), ("step 500", str(run / "checkpoints" / "step-000500")),
        ("step 250", str(run / "checkpoints" / "step-000250"))]
    assert trigger["value"] == "zq"
    assert sampler["value"] == "ddim" and "dpm++_2m_karras" in sampler["choices"] and guidance["value"] == 5.0


def _result(metrics):
    from studio.eval import GridResult

    return GridResult(None, [], None, metrics)


def test_concept_rates_are_one_row_per_weight_with_and_without_the_trigger():
    metrics = {"columns": [0.8, 0.9], "concept_rate_by_weight": {0.8: 0.25, 0.9: 0.25},
               "trigger": {"with": {"concept_rate_by_weight": {0.8: 0.5, 0.9: 0.5}, "change_by_weight": {0.8: 0.1}},
                           "without": {"concept_rate_by_weight": {0.8: 0.0, 0.9: 0.0}}}, "trigger_word": "zq"}
    table = [line for line in rate_table(metrics) if line.startswith("|")]
    assert table == ["| weight | with the trigger | without it (leak) |", "|---:|---:|---:|",
                     "| 0.8 | 50% | 0% |", "| 0.9 | 50% | 0% |"]
    shown = metrics_markdown(_result(metrics))
    assert "25%" not in shown and "Numbers below: the rows with the trigger \"zq\"." in shown
    assert "change from base** — 0.8: 0.1" in shown
    plain = [line for line in rate_table({"concept_rate_by_weight": {0.5: 1.0}}) if line.startswith("|")]
    assert plain == ["| weight | concept rate |", "|---:|---:|", "| 0.5 | 100% |"]


def test_the_page_shows_the_report_without_the_grid_picture_it_cannot_load(tmp_path):
    report = ("# Evaluation: run\n\n## Verdict\n\n- **Recommended weight: 0.8-0.9**\n\n"
              "## Grid\n\n![grid](eval/g/grid.png)\n")
    shown = report_for_page(report, tmp_path)
    assert "![grid]" not in shown and "Recommended weight: 0.8-0.9" in shown
    assert shown.endswith(f"_The full report with the grid: `{tmp_path / 'evaluation.md'}`_")
