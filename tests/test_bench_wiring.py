"""Wiring of the benchmarks, checked without timing anything or loading a real model: `run_all.py --dry-run`, the
sections of BENCHMARKS.md, the SDXL shapes and scale of the training benchmark, and `bench_gpu.py` without a GPU."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NAMES = ("training", "grid", "caption", "scan", "startup", "demo")


def test_dry_run_lists_every_benchmark_and_exits_zero():
    done = subprocess.run([sys.executable, "bench/run_all.py", "--quick", "--dry-run"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    for name in NAMES:
        assert f"  {name} " in done.stdout, done.stdout
    assert "(--quick)" in done.stdout and "Summary (bench/run_all.py)" in done.stdout


def test_dry_run_imports_no_torch_and_writes_nothing(tmp_path):
    script = (
        "import sys, runpy\n"
        "sys.argv = ['bench/run_all.py', '--dry-run', '--only', 'training', 'scan']\n"
        "try:\n    runpy.run_path('bench/run_all.py', run_name='__main__')\n"
        "except SystemExit as stop:\n    assert stop.code == 0, stop.code\n"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'gradio') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    before = (ROOT / "BENCHMARKS.md").stat().st_mtime_ns if (ROOT / "BENCHMARKS.md").exists() else None
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "training" in done.stdout and "scan" in done.stdout and "grid" not in done.stdout
    after = (ROOT / "BENCHMARKS.md").stat().st_mtime_ns if (ROOT / "BENCHMARKS.md").exists() else None
    assert before == after


def test_summary_section_goes_first_and_keeps_the_other_sections(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from common import replace_section
    finally:
        sys.path.remove(str(ROOT / "bench"))
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n## Captioning\n\nkept\n", encoding="utf-8")
    replace_section("## Summary (bench/run_all.py)", "## Summary (bench/run_all.py)\n\nfirst\n", path, first=True)
    replace_section("## Summary (bench/run_all.py)", "## Summary (bench/run_all.py)\n\nsecond\n", path, first=True)
    text = path.read_text(encoding="utf-8")
    assert text.index("second") < text.index("## Captioning") and "first" not in text and "kept" in text
    assert text.count("## Summary") == 1


@pytest.mark.parametrize("argv", [["--quick"], ["--model", "sdxl"], ["--model", "flux"]])
def test_gpu_benchmark_without_a_gpu_says_so_and_writes_nothing(argv):
    """CI has no GPU: ``bench/bench_gpu.py`` must say there is nothing to measure, exit 0 and leave the file alone."""
    before = (ROOT / "BENCHMARKS.md").read_bytes()
    done = subprocess.run([sys.executable, "bench/bench_gpu.py", *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "no CUDA device here" in done.stdout
    assert (ROOT / "BENCHMARKS.md").read_bytes() == before


def _bench_module(name: str):
    """Import ``bench/<name>.py`` (bench modules import their neighbours by bare name)."""
    import importlib

    sys.path.insert(0, str(ROOT / "bench"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "bench"))


def test_sdxl_configs_are_sdxl_base_1_0_and_half_width_keeps_the_layout():
    shapes = _bench_module("sdxl_shapes")
    unet = shapes.unet_config(1.0)
    assert unet["block_out_channels"] == [320, 640, 1280] and unet["transformer_layers_per_block"] == [1, 2, 10]
    assert unet["attention_head_dim"] == [5, 10, 20] and unet["layers_per_block"] == 2
    assert unet["cross_attention_dim"] == 2048 and unet["projection_class_embeddings_input_dim"] == 2816
    assert unet["addition_embed_type"] == "text_time" and unet["addition_time_embed_dim"] == 256
    assert unet["use_linear_projection"] is True and unet["sample_size"] == 128
    first, second = shapes.text_encoder_configs(1.0)
    assert (first["hidden_size"], first["num_hidden_layers"], first["hidden_act"]) == (768, 12, "quick_gelu")
    assert (second["hidden_size"], second["num_hidden_layers"], second["num_attention_heads"]) == (1280, 32, 20)
    assert (second["intermediate_size"], second["projection_dim"], second["hidden_act"]) == (5120, 1280, "gelu")
    assert shapes.vae_config()["scaling_factor"] == 0.13025
    half = shapes.unet_config(0.5)
    first, second = shapes.text_encoder_configs(0.5)
    assert half["block_out_channels"] == [160, 320, 640] and half["transformer_layers_per_block"] == [1, 2, 10]
    assert half["cross_attention_dim"] == first["hidden_size"] + second["hidden_size"] == 384 + 640
    assert half["projection_class_embeddings_input_dim"] == 6 * 256 + second["projection_dim"]
    for channels, heads in zip(half["block_out_channels"], half["attention_head_dim"]):
        assert channels % 32 == 0 and channels % heads == 0


def test_sdxl_parameter_counts_match_the_real_model_on_the_meta_device():
    counts = _bench_module("sdxl_shapes").parameter_counts(1.0)
    assert counts == {"text_encoder": 123_060_480, "text_encoder_2": 694_659_840, "vae": 83_653_863,
                      "unet": 2_567_463_684}


def test_training_benchmark_has_the_sdxl_scale_and_judges_its_goals():
    bench_train = _bench_module("bench_train")
    assert bench_train.SCALES["sdxl"] == {"resolution": 512, "batch": 1} and "sdxl" in bench_train.DEFAULT_SCALES
    assert ("sdxl", True) in bench_train.STEPS and ("sdxl", False) in bench_train.STEPS
    row = {"scale": "sdxl", "speed_ratio": 1.8, "cpu_ratio": 1.4, "ours": {"peak_rss_mb": 100.0},
           "reference": {"peak_rss_mb": 99.5}}
    assert dict(bench_train.goals(row)) == {"SDXL-shaped (0.5× width) step ≥ 1.5× faster than the reference":
                                            "NOT met", "SDXL-shaped (0.5× width) peak RSS no higher than the "
                                            "reference's": "met (equal within 1 %)"}
    done = subprocess.run([sys.executable, "bench/bench_train.py", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "sdxl" in done.stdout


def test_sdxl_reference_keeps_original_size_and_crop_corner_like_the_script(tmp_path):
    from PIL import Image

    Image.new("RGB", (800, 600), (10, 20, 30)).save(tmp_path / "wide.png")
    pixels, original, crop = _bench_module("train_reference").load_pixels(tmp_path / "wide.png", 512)
    assert tuple(pixels.shape) == (3, 512, 512) and original == (600, 800)
    assert crop == (0, round((round(800 * 512 / 600) - 512) / 2))  # (top, left), the script's rounding


def _gpu_listing(model: str) -> subprocess.CompletedProcess:
    """``bench_gpu.py --list --model <model>``, checked to exit 0 without importing torch."""
    script = (
        "import sys, runpy\n"
        f"sys.argv = ['bench/bench_gpu.py', '--list', '--model', '{model}']\n"
        "try:\n    runpy.run_path('bench/bench_gpu.py', run_name='__main__')\n"
        "except SystemExit as stop:\n    assert stop.code == 0, stop.code\n"
        "assert 'torch' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_gpu_benchmark_lists_sdxl_variants_without_torch():
    done = _gpu_listing("sdxl")
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 8 and all(line.startswith("sdxl 1024 px batch ") for line in lines)
    for batch in (1, 4):
        for precision in ("fp16", "bf16"):
            for state in ("on", "off"):
                assert f"sdxl 1024 px batch {batch} {precision} checkpointing {state}:" in done.stdout


def test_demo_benchmark_reports_both_thread_defaults_and_their_ratio():
    bench_demo, run_all, common = (_bench_module(name) for name in ("bench_demo", "run_all", "common"))
    rows = [{"default": "old default (torch: one thread per core)", "threads": 2, "steps": 1700, "seconds": 525.0,
             "each": [525.0], "load_after": [1.1]},
            {"default": "new default (by the model's size)", "threads": 1, "steps": 1700, "seconds": 175.0,
             "each": [175.0], "load_after": [1.0]}]
    result = {"rows": rows, "quick": False, "rounds": 1, "ratio": 3.0}
    text = bench_demo.markdown(result, common.machine(), "OMP_WAIT_POLICY=PASSIVE python bench/bench_demo.py")
    assert text.startswith("## Demo training time (bench/bench_demo.py)") and "3.00× faster here" in text
    assert "| old default (torch: one thread per core) | 2 | 1700 | 525.0 |" in text
    assert run_all.rows_demo(result) == [["demo training", "`train --config presets/demo/demo-star.yaml`, wall s, "
                                          "1700 steps (1 vs 2 torch threads)", "175.0", "525.0 (old default)",
                                          "3.00×", "—", "n/a"]]


def test_gpu_benchmark_lists_flux_variants_without_torch():
    done = _gpu_listing("flux")
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 16, done.stdout  # 2 resolutions x (reference + 3 base weights) x checkpointing on/off
    for resolution in (512, 1024):
        for state in ("on", "off"):
            prefix = f"flux {resolution} px batch 1 bf16 checkpointing {state} base_weights"
            assert f"{prefix} bf16: reference," in done.stdout
            for weights in ("bf16", "fp8", "nf4"):
                assert f"{prefix} {weights}: ours," in done.stdout
    assert not any("reference" in line and "bf16: reference" not in line for line in lines)


def test_flux_shapes_are_flux_1_dev_and_narrowing_keeps_the_layout():
    shapes = _bench_module("flux_shapes")
    config = shapes.transformer_config()
    assert (config["num_layers"], config["num_single_layers"], config["num_attention_heads"]) == (19, 38, 24)
    assert (config["attention_head_dim"], config["axes_dims_rope"], config["in_channels"]) == (128, (16, 56, 56), 64)
    assert (config["joint_attention_dim"], config["pooled_projection_dim"], config["guidance_embeds"]) == (4096, 768,
                                                                                                         True)
    vae = shapes.vae_config()
    assert (vae["latent_channels"], vae["scaling_factor"], vae["shift_factor"]) == (16, 0.3611, 0.1159)
    assert shapes.parameter_counts() == {"transformer": 11_901_408_320, "vae": 83_819_683}
    narrow = shapes.parameter_counts({**shapes.DEV, "heads": 3})
    assert 180e6 < narrow["transformer"] < 200e6 and narrow["vae"] == 83_819_683


def test_flux_reference_forward_matches_the_family_predict():
    """The reference's pack, position ids, guidance and unpack give what ``Flux.predict`` gives, on one model."""
    import torch

    from studio.models.families import FLUX, Conditioning

    shapes, reference = _bench_module("flux_shapes"), _bench_module("train_reference_flux")
    transformer = shapes.build_transformer(shapes.TINY, seed=3).eval()
    generator = torch.Generator().manual_seed(0)
    noisy = torch.randn(2, 16, 8, 12, generator=generator)
    hidden, pooled = torch.randn(2, 7, 4096, generator=generator), torch.randn(2, 768, generator=generator)
    timesteps = torch.tensor([250.0, 900.0])
    with torch.no_grad():
        theirs = reference.predict(transformer, noisy, timesteps, hidden, pooled, torch.zeros(7, 3), 3.5, 8)
        ours = FLUX.predict(transformer, noisy, timesteps, Conditioning(hidden, pooled), None, 3.5)
        other_guidance = FLUX.predict(transformer, noisy, timesteps, Conditioning(hidden, pooled), None, 1.0)
    assert theirs.shape == noisy.shape
    torch.testing.assert_close(ours, theirs)
    assert not torch.allclose(other_guidance, theirs)  # the guidance value reaches the transformer


def test_gpu_flux_section_pairs_each_ours_row_with_the_bf16_reference():
    gpu_flux, common = _bench_module("gpu_flux"), _bench_module("common")

    def side(name, weights, on_s, off, error=None):
        result = {"side": name, "base_weights": weights, "resolution": 1024,
                  "setup": {"setup": True, "setup_s": 30.0, "setup_peak_vram_mb": 45_000.0},
                  "variants": [{"checkpointing": True, "s_per_step": on_s, "peak_vram_mb": 30_000.0}, off]}
        return {**result, "error": error} if error else result

    sides = [side("reference", "bf16", 2.0, {"checkpointing": False, "s_per_step": 1.5, "peak_vram_mb": 60_000.0}),
             side("ours", "bf16", 1.6, {"checkpointing": False, "out_of_memory": "CUDA out of memory"}),
             side("ours", "nf4", 4.0, {"checkpointing": False}, error="exit status 1: Traceback\nKeyError: 'x'")]
    result = {"sides": sides, "machine": common.machine(), "steps": (1, 3), "tiny": False, "wall_s": 300.0,
              "command": "python bench/bench_gpu.py --model flux --quick"}
    rows = gpu_flux.rows(result)
    assert [(r["base_weights"], r["checkpointing"]) for r in rows] == [("bf16", True), ("bf16", False),
                                                                       ("nf4", True), ("nf4", False)]
    assert rows[0]["ratio"] == pytest.approx(1.25) and rows[1]["ratio"] is None
    text = gpu_flux.markdown(result)
    assert text.startswith("## GPU (FLUX.1)") and "| 1024 | on | bf16 | 1.600 | 2.000 | **1.25×** | 30,000 |" in text
    assert "| 1024 | off | bf16 | out of memory | 1.500 | — |" in text and "| 1024 | off | nf4 | failed |" in text
    assert "- ours nf4 1024 px: KeyError: 'x'" in text
