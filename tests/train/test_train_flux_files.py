"""What a FLUX.1 run leaves for users' tools: the diffusers file, which ComfyUI and Forge load as it is, checked
against their key rules as it is written (final file and checkpoints) with the check's report line, FLUX.1's
metadata (flux1, dev or schnell by the transformer, the flow-matching settings sd-scripts records), and DoRA
refused before training."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from safetensors import safe_open

from studio.config import load_config
from studio.lora.check import check_file
from studio.train import run_training
from studio.train.run_folder import RunFolder


@pytest.fixture(scope="module")
def schnell_dir(tmp_path_factory):
    """A tiny FLUX.1 model without a guidance embedding (schnell's layout) saved as a diffusers folder."""
    from studio.toyworld.flux_parts import build_flux_pipeline

    folder = tmp_path_factory.mktemp("tiny-flux-schnell")
    build_flux_pipeline(folder / "parts", guidance_embeds=False).save_pretrained(folder / "model")
    return folder / "model"


def _config(toy_dataset, base, output, **overrides):
    values = {"train_data_dir": str(toy_dataset), "base_model": str(base), "resolution": 32, "batch_size": 4,
              "lora_rank": 4, "lora_alpha": 2, "learning_rate": 1e-3, "max_steps": 4, "save_steps": 2,
              "train_text_encoder": True, "output_dir": str(output), "output_name": "fx", "seed": 7,
              "weighting_scheme": "logit_normal", "flow_shift": 3.0}
    return load_config({**values, **overrides})


def _metadata(path):
    with safe_open(str(path), framework="pt") as handle:
        return set(handle.keys()), dict(handle.metadata() or {})


def test_a_flux_run_writes_the_checked_diffusers_file_for_comfyui_and_forge(schnell_dir, toy_dataset, tmp_path):
    logs = []
    result = run_training(_config(toy_dataset, schnell_dir, tmp_path),
                          emit=lambda e: logs.append(e.message) if e.kind in ("log", "warning") else None)
    assert result.status == "finished" and result.webui_lora is None
    assert result.diffusers_lora == result.run_dir / "pytorch_lora_weights.safetensors"
    assert sorted(p.name for p in result.run_dir.glob("*.safetensors")) == ["pytorch_lora_weights.safetensors"]
    keys, metadata = _metadata(result.diffusers_lora)
    said = [m for m in logs if m.startswith("pytorch_lora_weights.safetensors loads")]
    assert said == [f"pytorch_lora_weights.safetensors loads in ComfyUI and Forge: {len(keys)}/{len(keys)} keys, no "
                    "alpha (clients apply scale 1.0) (alpha 2 / rank 4 folded into lora_B); A1111 has no FLUX.1"]
    for written in (result.diffusers_lora, RunFolder(result.run_dir).checkpoints()[-1] / result.diffusers_lora.name):
        report = check_file(written)
        assert report.ok and report.family == "flux", report.summary()
    assert sum(k.startswith("text_encoder.") for k in keys) == 16  # 2 CLIP layers x 4 projections x (A, B)


def test_a_flux_files_metadata_names_the_model_and_the_flow_matching_settings(schnell_dir, toy_dataset, tmp_path):
    result = run_training(_config(toy_dataset, schnell_dir, tmp_path, max_steps=2, save_steps=0,
                                  train_text_encoder=False))
    _, metadata = _metadata(result.diffusers_lora)
    assert {key: metadata[key] for key in (
        "ss_base_model_version", "modelspec.architecture", "modelspec.implementation", "ss_weighting_scheme",
        "ss_discrete_flow_shift", "ss_guidance_scale", "ss_model_prediction_type", "ss_network_alpha",
        "studio.trained_alpha")} == {
        "ss_base_model_version": "flux1", "modelspec.architecture": "flux-1-schnell/lora",
        "modelspec.implementation": "https://github.com/black-forest-labs/flux", "ss_weighting_scheme": "logit_normal",
        "ss_discrete_flow_shift": "3.0", "ss_guidance_scale": "1.0", "ss_model_prediction_type": "raw",
        "ss_network_alpha": "4.0", "studio.trained_alpha": "2"}
    assert "modelspec.prediction_type" not in metadata and "ss_v2" not in metadata


def test_a_dev_transformer_makes_a_dev_lora():
    from studio.models.families import FLUX
    from studio.toyworld.architecture import flux_transformer_config
    from studio.train.export import family_values

    from diffusers import FluxTransformer2DModel

    config = SimpleNamespace(weighting_scheme="none", logit_mean=0.0, logit_std=1.0, mode_scale=1.29,
                             guidance_scale=3.5, flow_shift=0.0)
    values = {}
    for guidance in (True, False):
        transformer = FluxTransformer2DModel(**flux_transformer_config(guidance_embeds=guidance, double_layers=1,
                                                                       single_layers=1))
        setup = SimpleNamespace(config=config, components=SimpleNamespace(family=FLUX, denoiser=transformer),
                                accelerator=SimpleNamespace(unwrap_model=lambda model: model),
                                objective=SimpleNamespace(prediction_type="flow"))
        values[guidance] = family_values(setup)
    assert (values[True]["architecture"], values[False]["architecture"]) == ("flux-1-dev/lora", "flux-1-schnell/lora")
    assert values[True]["guidance_scale"] == 3.5 and values[True]["model_prediction_type"] == "raw"


def test_dora_on_flux_is_refused_before_training_with_a_sentence(schnell_dir, toy_dataset, tmp_path):
    from studio.train.adapters import AdapterError

    with pytest.raises(AdapterError, match="use_dora: FLUX.1 LoRAs reach ComfyUI and Forge as the diffusers file"):
        run_training(_config(toy_dataset, schnell_dir, tmp_path, use_dora=True))


def test_the_cli_names_the_diffusers_file_as_the_one_for_comfyui_and_forge(schnell_dir, toy_dataset, tmp_path,
                                                                          capsys):
    import yaml

    from studio.cli import EXIT_OK, main

    values = {"train_data_dir": str(toy_dataset), "base_model": str(schnell_dir), "resolution": 32,
              "batch_size": 4, "max_steps": 2, "output_dir": str(tmp_path / "out"), "output_name": "fx"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(values))
    assert main(["train", "--config", str(tmp_path / "config.yaml"), "--quiet"]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    final = [line for line in lines if line.startswith("LoRA for ComfyUI")]
    assert len(final) == 1 and final[0].startswith("LoRA for ComfyUI / Forge: ")
    assert final[0].endswith("pytorch_lora_weights.safetensors (the diffusers file; A1111 has no FLUX.1)")


def test_a_flux_file_with_alpha_folded_continues_as_the_same_lora(schnell_dir, toy_dataset, tmp_path):
    """init_lora reads the file's alpha (= rank, the scale being in lora_B) and rescales for the new run's alpha."""
    import torch
    from safetensors.torch import load_file

    first = run_training(_config(toy_dataset, schnell_dir, tmp_path / "a", max_steps=2, save_steps=0))
    more = run_training(_config(toy_dataset, schnell_dir, tmp_path / "b", max_steps=1, save_steps=0, lora_alpha=8,
                                learning_rate=1e-9, init_lora=str(first.diffusers_lora)))
    before, after = load_file(str(first.diffusers_lora)), load_file(str(more.diffusers_lora))
    assert before.keys() == after.keys()
    for key in before:  # alpha 2 folded (x 0.5) before; alpha 8 folded (x 2) after: the same update B A
        assert torch.allclose(after[key], before[key], atol=1e-6), key
