"""Save now and Sample now: asked mid-run through the commands object (the engine), the studio's training job,
and the command file of a run in several processes; the run goes on after each."""
from __future__ import annotations

import time
from pathlib import Path

from studio.config import load_config
from studio.app.training import TrainingJob
from studio.train import run_training
from studio.train.control import TrainingCommands
from studio.train.events import CheckpointEvent, SampleEvent, StepEvent, WarningEvent
from studio.train.run_folder import RunFolder


def _asking(commands: TrainingCommands, asks: dict[int, str], events: list):
    """An ``emit`` that records every event and, on reaching a step of ``asks``, asks for that command."""
    def emit(event) -> None:
        events.append(event)
        if isinstance(event, StepEvent) and event.step in asks:
            getattr(commands, asks[event.step])()
    return emit


def test_save_now_writes_the_checkpoint_of_that_step_and_sample_now_draws_that_step(write_config, tmp_path):
    commands, events = TrainingCommands(), []
    config = load_config(write_config(output_dir=str(tmp_path / "out"), max_steps=6, save_steps=0,
                                      validation_prompts=["a red star"]))
    result = run_training(config, emit=_asking(commands, {3: "save_now", 4: "sample_now"}, events), commands=commands)
    assert result.status == "finished" and result.step == 6, "the run goes on after each"
    folder = RunFolder(result.run_dir)
    assert folder.checkpoints() == [folder.checkpoint_dir(3)]
    assert [(e.step, e.path) for e in events if isinstance(e, CheckpointEvent)] == [(3, str(folder.checkpoint_dir(3)))]
    samples = [e for e in events if isinstance(e, SampleEvent)]
    assert [e.step for e in samples] == [4] and len(samples[0].paths) == 1
    assert Path(samples[0].paths[0]).parent == folder.samples_dir(4) and Path(samples[0].paths[0]).is_file()
    order = [(type(e).__name__, e.step) for e in events if isinstance(e, (StepEvent, CheckpointEvent, SampleEvent))]
    assert order[2:6] == [("StepEvent", 3), ("CheckpointEvent", 3), ("StepEvent", 4), ("SampleEvent", 4)]
    assert folder.info()["last_checkpoint"] == str(folder.checkpoint_dir(3))


def test_a_saved_now_checkpoint_resumes_like_any_other(write_config, tmp_path):
    """Resuming from the step-3 checkpoint Save now wrote gives the LoRA of a straight run."""
    from safetensors.torch import load_file

    straight = run_training(load_config(write_config(output_dir=str(tmp_path / "a"), max_steps=6, save_steps=0)))
    commands = TrainingCommands()
    first = run_training(load_config(write_config(output_dir=str(tmp_path / "b"), max_steps=6, save_steps=0)),
                         emit=_asking(commands, {3: "save_now", 4: "stop"}, []), commands=commands)
    assert first.status == "stopped" and [c.name for c in RunFolder(first.run_dir).checkpoints()] == [
        "step-000003", "step-000004"]
    RunFolder(first.run_dir).checkpoint_dir(4).rename(first.run_dir / "checkpoints" / ".gone")
    resumed = run_training(load_config(write_config(output_dir=str(tmp_path / "b"), max_steps=6, save_steps=0,
                                                    resume=str(first.run_dir))))
    a, b = load_file(str(straight.diffusers_lora)), load_file(str(resumed.diffusers_lora))
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


def test_sample_now_without_sample_prompts_says_so_and_trains_on(write_config, tmp_path):
    commands, events = TrainingCommands(), []
    config = load_config(write_config(output_dir=str(tmp_path / "out"), max_steps=3, save_steps=0))
    result = run_training(config, emit=_asking(commands, {1: "sample_now"}, events), commands=commands)
    assert result.status == "finished"
    warnings = [e.message for e in events if isinstance(e, WarningEvent)]
    assert warnings == ["sample now: the config has no sample prompts (validation_prompts); nothing to draw"]
    assert not (result.run_dir / "samples").exists()


def _wait_for(condition, timeout: float = 120) -> None:
    started = time.time()
    while not condition():
        assert time.time() - started < timeout, "timed out"
        time.sleep(0.05)


def test_the_training_job_passes_save_now_and_sample_now_to_the_run(write_config, tmp_path):
    job = TrainingJob()
    assert not job.save_now() and not job.sample_now(), "nothing runs yet"
    job.start(load_config(write_config(output_dir=str(tmp_path / "out"), max_steps=400, save_steps=0,
                                       validation_prompts=["a red star"])))
    _wait_for(lambda: job.snapshot().step >= 2)
    assert job.save_now() and job.sample_now()
    _wait_for(lambda: job.snapshot().last_checkpoint and job.snapshot().sample_step)
    assert job.stop() and job.wait(120)
    snapshot = job.snapshot()
    assert snapshot.status == "stopped"
    folder = RunFolder(snapshot.run_dir)
    saved = [c for c in folder.checkpoints() if c != Path(snapshot.last_checkpoint)]
    assert saved and 2 <= int(saved[0].name.split("-")[1]) < snapshot.step, "a checkpoint before the stop's own"
    assert snapshot.samples and all(Path(p).parent == folder.samples_dir(snapshot.sample_step)
                                    for p in snapshot.samples)
    logs = "\n".join(snapshot.logs)
    assert "save requested" in logs and "samples requested" in logs and "error" not in logs
    assert not job.save_now(), "nothing runs any more"
