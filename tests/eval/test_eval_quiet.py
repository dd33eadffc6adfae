"""Loading several text-encoder LoRAs prints no transformers "LOAD REPORT" of the earlier adapters' weights,
while a report of a real problem still shows."""
from __future__ import annotations

import logging

import pytest

from studio.eval.session import (TRANSFORMERS_PEFT_LOGGER, Adapters, EarlierAdaptersReport, get_pipeline,
                                 loaded_adapters)


@pytest.fixture(scope="module")
def text_encoder_run(tmp_path_factory, tiny_sd_dir, eval_dataset):
    """Two steps with text-encoder LoRA, a checkpoint after each: two LoRA files that touch the text encoder."""
    from studio.config import load_config
    from studio.train import run_training

    config = load_config({
        "train_data_dir": str(eval_dataset), "base_model": str(tiny_sd_dir), "resolution": 32, "batch_size": 2,
        "lora_rank": 2, "train_text_encoder": True, "max_steps": 2, "save_steps": 1,
        "output_dir": str(tmp_path_factory.mktemp("te-runs")), "output_name": "te", "seed": 3,
    })
    result = run_training(config)
    assert result.status == "finished"
    return result.run_dir


class _Said(logging.Handler):
    """Every message transformers logs while attached (its own handler may write to a stream pytest swapped)."""

    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_eval_second_text_encoder_adapter_loads_without_a_load_report(text_encoder_run, tiny_sd_dir):
    files = sorted(text_encoder_run.glob("checkpoints/step-*/pytorch_lora_weights.safetensors"))
    files.append(text_encoder_run / "pytorch_lora_weights.safetensors")
    pipe = get_pipeline(str(tiny_sd_dir), device="cpu")
    said = _Said()
    logging.getLogger("transformers").addHandler(said)
    try:
        with Adapters(pipe) as adapters:
            names = [adapters.load(path) for path in files]
    finally:
        logging.getLogger("transformers").removeHandler(said)
    assert names == [f"grid_{i}" for i in range(len(files))] and len(files) >= 2
    assert not loaded_adapters(pipe)  # taken out again when the grid ends
    assert not [message for message in said.messages if "LOAD REPORT" in message]
    assert not logging.getLogger(TRANSFORMERS_PEFT_LOGGER).filters  # the filter is taken off again


def _report(*rows: tuple[str, str]) -> logging.LogRecord:
    table = "Key | Status | \n----+---------+-\n" + "".join(f"{key} | {status} | \n" for key, status in rows)
    message = f"\x1b[1mCLIPTextModel LOAD REPORT\x1b[0m from: None\n{table}\nNotes:\n- MISSING: newly initialized"
    return logging.LogRecord(TRANSFORMERS_PEFT_LOGGER, logging.WARNING, __file__, 1, message, None, None)


def test_eval_load_reports_of_real_problems_still_show():
    quiet = EarlierAdaptersReport("grid_1")
    earlier = ("encoder.layers.{0, 1}.self_attn.q_proj.lora_A.grid_0.weight", "MISSING")
    assert quiet.filter(_report(earlier)) is False
    own = ("encoder.layers.{0, 1}.self_attn.q_proj.lora_A.grid_1.weight", "MISSING")
    assert quiet.filter(_report(earlier, own)) is True  # the adapter being loaded lacks weights
    assert quiet.filter(_report(earlier, ("text_model.embeddings.position_ids", "UNEXPECTED"))) is True
    assert quiet.filter(_report(("text_model.final_layer_norm.weight", "MISSING"))) is True  # a base weight
    other = logging.LogRecord(TRANSFORMERS_PEFT_LOGGER, logging.WARNING, __file__, 1, "something else", None, None)
    assert quiet.filter(other) is True
