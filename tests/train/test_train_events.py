"""What a run reports and what it can be asked: typed events that cross processes as JSON, and the commands."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from studio.train.control import FileCommands, Requests, TrainingCommands, append_command
from studio.train.events import (
    EVENT_TYPES, CheckpointEvent, DoneEvent, LogEvent, SampleEvent, StartEvent, StepEvent, ValidationEvent,
    WarningEvent, event_from_dict,
)

ROOT = Path(__file__).resolve().parents[2]

ONE_OF_EACH = [
    StartEvent(step=4, total_steps=40, run_dir="/runs/star-20250101-120000"),
    StepEvent(step=5, total_steps=40, epoch=2, loss=0.125, val_loss=0.25, lr=1e-4, elapsed_s=3.5, eta_s=28.0),
    StepEvent(step=6, total_steps=40, epoch=2, loss=0.5, lr=1e-4, elapsed_s=4.0),
    ValidationEvent(step=0, total_steps=40, val_loss=0.3),
    SampleEvent(step=10, total_steps=40, paths=("/runs/x/samples/step-000010/00-trigger-a.png",
                                                "/runs/x/samples/step-000010/01-no-trigger-a.png")),
    CheckpointEvent(step=10, total_steps=40, epoch=3, path="/runs/x/checkpoints/step-000010"),
    LogEvent(message="effective batch 4: 4 per process x 1 process(es) x 1 accumulation"),
    WarningEvent(message="mixed_precision fp16 needs a CUDA GPU"),
    DoneEvent(step=40, total_steps=40, status="finished", run_dir="/runs/x"),
]


def test_every_event_type_survives_the_json_line_between_processes():
    assert {type(event) for event in ONE_OF_EACH} == set(EVENT_TYPES.values())
    for event in ONE_OF_EACH:
        line = json.dumps(event.to_dict())
        assert json.loads(line)["kind"] == event.kind
        assert event_from_dict(json.loads(line)) == event


def test_a_line_that_is_no_event_is_refused():
    with pytest.raises(ValueError, match="not a training event"):
        event_from_dict({"kind": "party", "step": 1})
    with pytest.raises(ValueError, match="no field"):
        event_from_dict({"kind": "step", "step": 1, "colour": "red"})


def test_a_sample_event_names_its_folder():
    assert ONE_OF_EACH[4].folder == "/runs/x/samples/step-000010"
    assert SampleEvent(step=1).folder == ""


def test_the_events_and_commands_load_without_torch():
    code = ("import sys, studio.train.events, studio.train.control, studio.train.run_folder; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["False"]


def test_save_and_sample_are_taken_once_stop_stays():
    commands = TrainingCommands()
    assert commands.take() == Requests()
    commands.save_now()
    commands.sample_now()
    assert commands.take() == Requests(save=True, sample=True)
    assert commands.take() == Requests()
    commands.stop()
    assert commands.stop_requested and commands.take() == Requests(stop=True) == commands.take()


def test_commands_from_many_threads_are_all_seen():
    commands = TrainingCommands()
    seen = []
    threads = [threading.Thread(target=commands.save_now) for _ in range(8)]
    for thread in threads:
        thread.start()
        seen.append(commands.take().save)
    for thread in threads:
        thread.join()
    seen.append(commands.take().save)
    assert any(seen) and not commands.take().save


def test_file_commands_read_each_line_once_and_the_stop_file(tmp_path):
    stop_file, command_file = tmp_path / "run.stop", tmp_path / "run.commands"
    commands = FileCommands(stop_file, command_file)
    assert commands.take() == Requests()  # no files yet
    append_command(command_file, "save")
    assert commands.take() == Requests(save=True)
    assert commands.take() == Requests()  # the line was read once
    append_command(command_file, "sample")
    with open(command_file, "a", encoding="utf-8") as handle:
        handle.write("sa")  # a line still being written waits for its end
    assert commands.take() == Requests(sample=True)
    with open(command_file, "a", encoding="utf-8") as handle:
        handle.write("ve\n")
    assert commands.take() == Requests(save=True)
    stop_file.touch()
    assert commands.take() == Requests(stop=True)


def test_only_the_main_process_follows_the_command_file(tmp_path):
    stop_file, command_file = tmp_path / "run.stop", tmp_path / "run.commands"
    append_command(command_file, "save")
    other = FileCommands(stop_file, command_file, follow_file=False)
    assert other.take() == Requests()
    stop_file.touch()
    assert other.take() == Requests(stop=True)
