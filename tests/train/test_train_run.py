"""Training runs end to end on the tiny SD 1.x-shaped model: run folder, LoRA files, resume, determinism."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from studio.config import load_config
from studio.train import run_training
from studio.train.run_folder import RunFolder
from run_helpers import stop_after

ROOT = Path(__file__).resolve().parents[2]


def _image(pipe, weight: float | None) -> torch.Tensor:
    if weight is not None:
        pipe.set_adapters(["lora"], [weight])
    generator = torch.Generator().manual_seed(0)
    out = pipe("a red circle on a white background", num_inference_steps=3, generator=generator, output_type="np")
    return torch.from_numpy(out.images)


def _load_pipe(model_dir):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(str(model_dir), safety_checker=None, requires_safety_checker=False)


def test_cli_run_writes_run_folder_and_loadable_lora_files(write_config, tiny_sd_dir):
    config_path = write_config(train_text_encoder=True, text_encoder_lr=5e-4)
    done = subprocess.run(
        [sys.executable, "studio.py", "train", "--config", str(config_path), "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "torchvision" not in done.stderr, "transformers' notice about torchvision, which the studio never uses"
    runs = list((config_path.parent / "output").glob("tiny-*"))
    assert len(runs) == 1
    run = runs[0]
    assert (run / "config.yaml").is_file() and load_config(run / "config.yaml").lora_rank == 4
    steps = [r["step"] for r in RunFolder(run).loss_log()]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert {"epoch", "loss", "lr", "time"} <= set(RunFolder(run).loss_log()[0])
    assert list((run / "logs").glob("events.out.tfevents.*")), "no TensorBoard event file"
    assert (run / "checkpoints" / "step-000003" / "pytorch_lora_weights.safetensors").is_file()
    assert json.loads((run / "run.json").read_text())["status"] == "finished"

    pipe = _load_pipe(tiny_sd_dir)
    base = _image(pipe, None)
    for lora_file in (run / "pytorch_lora_weights.safetensors", run / "tiny.safetensors"):
        pipe.load_lora_weights(str(lora_file), adapter_name="lora")
        assert (_image(pipe, 0.0) - base).abs().max() < 1e-5
        assert (_image(pipe, 1.0) - base).abs().max() > 1e-4
        pipe.delete_adapters(["lora"])
    kohya = load_file(str(run / "tiny.safetensors"))
    assert any(k.startswith("lora_te_text_model_encoder_layers_") for k in kohya)
    assert all(kohya[k].item() == 8.0 for k in kohya if k.endswith(".alpha"))
    _assert_kohya_keys_map_to_modules(kohya, pipe)


def _assert_kohya_keys_map_to_modules(kohya: dict, pipe) -> None:
    """Every WebUI module name is a real UNet / text-encoder layer, with down, up and alpha tensors."""
    from studio.lora import kohya_module_map

    modules = kohya_module_map(pipe.unet, pipe.text_encoder)
    names = {key.partition(".")[0] for key in kohya}
    unet_layers = dict(pipe.unet.named_modules())
    text_layers = dict(pipe.text_encoder.named_modules())
    for name in names:
        assert name.startswith(("lora_unet_", "lora_te_")), name
        layers = unet_layers if name.startswith("lora_unet_") else text_layers
        assert modules[name][1] in layers, name
        assert {f"{name}.lora_down.weight", f"{name}.lora_up.weight", f"{name}.alpha"} <= kohya.keys(), name


def test_ctrl_c_saves_a_checkpoint_exits_130_and_resume_latest_finishes(write_config):
    import signal
    import time

    config_path = write_config(max_steps=60, save_steps=1000)
    process = subprocess.Popen([sys.executable, "studio.py", "train", "--config", str(config_path), "--quiet"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    output = config_path.parent / "output"
    deadline = time.time() + 120
    while time.time() < deadline and not any(len(RunFolder(r).loss_log()) >= 3 for r in output.glob("tiny-*")):
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    run = next(output.glob("tiny-*"))
    stopped_at = json.loads((run / "run.json").read_text())
    assert stopped_at["status"] == "stopped" and 3 <= stopped_at["step"] < 60
    assert (run / "checkpoints" / f"step-{stopped_at['step']:06d}").is_dir()
    done = subprocess.run([sys.executable, "studio.py", "train", "--config", str(config_path), "--quiet",
                           "--resume", "latest"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [r["step"] for r in RunFolder(run).loss_log()] == list(range(1, 61))


def _lora_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "pytorch_lora_weights.safetensors"))


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_stop_and_resume_equals_straight_run(write_config, tmp_path):
    straight = run_training(load_config(write_config(max_steps=20, save_steps=5, output_dir=str(tmp_path / "a"))))
    assert straight.status == "finished"

    config = load_config(write_config(max_steps=20, save_steps=5, output_dir=str(tmp_path / "b")))
    stopped = run_training(config, **stop_after(10))
    assert stopped.status == "stopped" and stopped.step == 10
    assert not (stopped.run_dir / "pytorch_lora_weights.safetensors").exists()

    resumed = run_training(load_config(write_config(max_steps=20, save_steps=5, output_dir=str(tmp_path / "b"),
                                                    resume="latest")))
    assert resumed.status == "finished" and resumed.run_dir == stopped.run_dir
    assert _max_diff(_lora_tensors(straight.run_dir), _lora_tensors(resumed.run_dir)) <= 1e-6
    assert [r["step"] for r in RunFolder(resumed.run_dir).loss_log()] == list(range(1, 21))


def test_resume_after_steps_past_the_checkpoint_logs_each_step_once(write_config, tmp_path):
    """A run killed after step 7 with its last checkpoint at 5 retrains 6 and 7; the log keeps them once."""
    out = str(tmp_path / "c")
    first = run_training(load_config(write_config(max_steps=10, save_steps=5, output_dir=out)),
                         **stop_after(7))
    (first.run_dir / "checkpoints" / "step-000007").rename(first.run_dir / "checkpoints" / ".gone")
    run_training(load_config(write_config(max_steps=10, save_steps=5, output_dir=out, resume=str(first.run_dir))))
    assert [r["step"] for r in RunFolder(first.run_dir).loss_log()] == list(range(1, 11))


def test_same_seed_gives_identical_lora_and_precision_can_change_between_runs(write_config, tmp_path):
    first = run_training(load_config(write_config(output_dir=str(tmp_path / "1"))))
    second = run_training(load_config(write_config(output_dir=str(tmp_path / "2"))))
    assert _max_diff(_lora_tensors(first.run_dir), _lora_tensors(second.run_dir)) == 0.0
    bf16 = run_training(load_config(write_config(output_dir=str(tmp_path / "3"), mixed_precision="bf16")))
    assert bf16.status == "finished"
    other_seed = run_training(load_config(write_config(output_dir=str(tmp_path / "4"), seed=8)))
    assert _max_diff(_lora_tensors(first.run_dir), _lora_tensors(other_seed.run_dir)) > 0


def test_fp16_on_cpu_falls_back_with_a_warning(write_config, tmp_path):
    warnings = []
    result = run_training(
        load_config(write_config(output_dir=str(tmp_path / "w"), mixed_precision="fp16", max_steps=2)),
        emit=lambda e: warnings.append(e.message) if e.kind == "warning" else None,
    )
    assert result.status == "finished"
    assert any("fp16" in w and "CPU" in w for w in warnings)


@pytest.mark.parametrize("option", [
    {"gradient_accumulation_steps": 2, "lr_scheduler": "cosine", "lr_warmup_steps": 2},
    {"min_snr_gamma": 5.0, "noise_offset": 0.05, "caption_dropout": 0.3, "random_flip": True},
    {"cache_latents": False, "gradient_checkpointing": True, "use_dora": True},
])
def test_training_options_run_and_lower_nothing_to_nan(write_config, tmp_path, option):
    result = run_training(load_config(write_config(output_dir=str(tmp_path / "o"), max_steps=4, **option)))
    losses = [r["loss"] for r in RunFolder(result.run_dir).loss_log()]
    assert len(losses) == 4 and all(l == l and l < 10 for l in losses)


def test_incremental_training_continues_from_an_existing_lora_file(write_config, tmp_path):
    from studio.train.adapters import AdapterError

    first = run_training(load_config(write_config(output_dir=str(tmp_path / "first"), max_steps=4)))
    start = _lora_tensors(first.run_dir)
    for source in (first.run_dir / "pytorch_lora_weights.safetensors", first.run_dir / "tiny.safetensors"):
        more = run_training(load_config(write_config(output_dir=str(tmp_path / "more"), max_steps=1,
                                                     learning_rate=1e-9, init_lora=str(source))))
        assert _max_diff(start, _lora_tensors(more.run_dir)) < 1e-5
    with pytest.raises(AdapterError, match="rank"):
        run_training(load_config(write_config(output_dir=str(tmp_path / "bad"), lora_rank=8,
                                              init_lora=str(first.run_dir / "pytorch_lora_weights.safetensors"))))


def test_markdown_and_weighting_in_captions_train_exactly_like_plain_captions(write_config, toy_dataset, tmp_path):
    import shutil

    from studio.data import CaptionRecord, read_metadata, write_metadata

    marked = tmp_path / "marked"
    shutil.copytree(toy_dataset, marked)
    records = read_metadata(marked / "metadata.csv").records
    decorated = []
    for record in records:
        colour_shape, rest = record.prompt.split(" on ", 1)
        decorated.append(CaptionRecord(record.filename, f"**{colour_shape}** on (*{rest}*:1.2)"))
    write_metadata(marked / "metadata.csv", decorated)
    plain = run_training(load_config(write_config(output_dir=str(tmp_path / "plain"), max_steps=3)))
    fancy = run_training(load_config(write_config(output_dir=str(tmp_path / "fancy"), max_steps=3,
                                                  train_data_dir=str(marked))))
    assert _max_diff(_lora_tensors(plain.run_dir), _lora_tensors(fancy.run_dir)) == 0.0


def test_conv_and_attention_lora_files_agree_and_keep_both_parts(write_config, tmp_path, tiny_sd_dir):
    """A LoCon-style LoRA (attention + ResNet convs): both files carry both parts and give the same picture."""
    result = run_training(load_config(write_config(output_dir=str(tmp_path / "locon"), max_steps=3,
                                                   target_modules=["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2"])))
    pipe = _load_pipe(tiny_sd_dir)
    base = _image(pipe, None)
    images = []
    for lora_file in (result.run_dir / "pytorch_lora_weights.safetensors", result.run_dir / "tiny.safetensors"):
        pipe.load_lora_weights(str(lora_file), adapter_name="lora")
        assert hasattr(pipe.unet.get_submodule("down_blocks.0.resnets.0.conv1"), "lora_A")
        assert hasattr(pipe.unet.get_submodule("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"), "lora_A")
        images.append(_image(pipe, 1.0))
        pipe.delete_adapters(["lora"])
    assert (images[0] - images[1]).abs().max() < 1e-4
    assert (images[0] - base).abs().max() > 1e-4
