"""The CPU thread count a run trains with: chosen by the model's size unless the config or OMP_NUM_THREADS says,
written to the run's log and run.json, and handed back to the process afterwards."""
from __future__ import annotations

import json

import torch

from studio.config import load_config
from studio.train import run_training
from studio.train.threads import SMALL_MODEL_PARAMETERS, choose_threads


def test_a_small_model_trains_on_one_thread_and_a_large_one_on_every_core():
    toy = choose_threads(None, 1_687_652, default_threads=2, environ={})  # the toy-world UNet
    assert toy.count == 1 and "1.7 M denoiser parameters" in toy.reason
    sd15 = choose_threads(None, 859_520_964, default_threads=2, environ={})  # SD 1.5's UNet
    assert sd15.count == 2 and "one per core" in sd15.reason
    assert choose_threads(None, SMALL_MODEL_PARAMETERS, default_threads=8, environ={}).count == 8


def test_the_setting_wins_then_omp_num_threads_then_the_gpu():
    assert choose_threads(3, 2_000_000, 2, environ={"OMP_NUM_THREADS": "2"}).count == 3
    told = choose_threads(None, 2_000_000, 2, environ={"OMP_NUM_THREADS": "2"})
    assert (told.count, told.reason) == (2, "OMP_NUM_THREADS=2")
    assert choose_threads(None, 2_000_000, 16, on_gpu=True, environ={}).count == 16
    assert choose_threads(None, 900_000_000, 16, processes=4, environ={}).count == 4  # the cores are shared


def test_a_run_says_its_thread_count_records_it_and_gives_the_process_its_own_back(write_config, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # tests/conftest.py sets it for the test processes
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        events, during = [], []

        def emit(event):
            events.append(event)
            if event.kind == "step":
                during.append(torch.get_num_threads())

        result = run_training(load_config(write_config(max_steps=2)), emit=emit)
        assert torch.get_num_threads() == 2, "the process keeps its own thread count after a run"
    finally:
        torch.set_num_threads(before)
    logged = [event.message for event in events if event.kind == "log" and "CPU threads" in event.message]
    assert logged == ["CPU threads: 1 (1.7 M denoiser parameters, under 20 M: a model this small trains faster on one "
                      "thread; set cpu_threads to choose)"]
    assert during == [1, 1]
    assert json.loads((result.run_dir / "run.json").read_text())["cpu_threads"] == 1


def test_the_cpu_threads_setting_is_what_the_run_uses(write_config):
    events = []
    result = run_training(load_config(write_config(max_steps=1, cpu_threads=2)), emit=events.append)
    assert "CPU threads: 2 (the cpu_threads setting)" in [event.message for event in events if event.kind == "log"]
    assert json.loads((result.run_dir / "run.json").read_text())["cpu_threads"] == 2
