"""A run folder is trained by one run at a time, a killed run's leftovers are cleared, and a config whose latent
encode cannot fit is refused with a sentence before any encoding (issue 15)."""
from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from studio.config import load_config
from studio.app.processes import ProcessRunner
from studio.app.training import TrainingJob
from studio.train import run_training
from studio.train.events import TrainEvent
from studio.train.memory import AVAILABLE_ENV
from studio.train.run_folder import LOCK_FILE, RunFolder

ROOT = Path(__file__).resolve().parents[2]
HELD = re.compile(r"is being trained by process (\d+) on this machine since \d\d:\d\d; wait for it or stop it")


def _cli(*args: str, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "studio.py", "train", "--quiet", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture
def resumable(write_config):
    """(config resuming "latest", its run folder): a finished 4-step run with a checkpoint at step 2."""
    result = run_training(load_config(write_config("first.yaml", max_steps=4, save_steps=2)))
    assert result.status == "finished" and [c.name for c in RunFolder(result.run_dir).checkpoints()] == ["step-000002"]
    return write_config("resume.yaml", max_steps=4, save_steps=2, resume="latest"), result.run_dir


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def _plant_lock(run_dir: Path, pid: int) -> None:
    record = {"pid": pid, "host": socket.gethostname(), "started_at": time.time() - 60, "token": "planted"}
    (run_dir / LOCK_FILE).write_text(json.dumps(record))


# -- one run per run folder ------------------------------------------------------------------------------------
def test_a_second_run_on_a_busy_run_folder_exits_2_naming_the_holder_and_the_first_finishes(resumable):
    config_path, run_dir = resumable
    inside, release = threading.Event(), threading.Event()

    def first_emit(event: TrainEvent) -> None:  # the first run pauses at its first step, holding the folder
        if event.kind == "step":
            inside.set()
            release.wait(120)

    outcome = {}
    first = threading.Thread(target=lambda: outcome.update(result=run_training(load_config(config_path),
                                                                                emit=first_emit)))
    first.start()
    try:
        assert inside.wait(120), "the first run never reached a step"
        second = _cli("--config", str(config_path))
    finally:
        release.set()
        first.join(120)
    assert second.returncode == 2, second.stderr[-2000:]
    assert "Traceback" not in second.stderr
    assert f"error: {run_dir} is being trained by process {os.getpid()}" in second.stderr
    assert HELD.search(second.stderr), second.stderr
    result = outcome["result"]
    assert result.status == "finished" and result.run_dir == run_dir
    assert (run_dir / "pytorch_lora_weights.safetensors").is_file()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    assert [r["step"] for r in map(json.loads, (run_dir / "loss.jsonl").read_text().splitlines())] == [1, 2, 3, 4]
    assert not (run_dir / LOCK_FILE).exists(), "the lock must go when the run ends"


def test_the_studio_refuses_a_busy_run_folder_with_the_sentence_before_loading_the_model(resumable, monkeypatch):
    import studio.models

    config_path, run_dir = resumable
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        _plant_lock(run_dir, holder.pid)
        before = (run_dir / "run.json").read_bytes()
        monkeypatch.setattr(studio.models, "load_components", lambda *a, **k: pytest.fail("the model was loaded"))
        job = TrainingJob()
        job.start(load_config(config_path))
        assert job.wait(60)
    finally:
        holder.kill()
        holder.wait()
    snapshot = job.snapshot()
    assert snapshot.status == "failed"
    assert snapshot.error.startswith(f"{run_dir} is being trained by process {holder.pid} on this machine since ")
    assert snapshot.error.endswith("; wait for it or stop it")
    assert not any("Traceback" in line or line.startswith("  File ") for line in snapshot.logs), snapshot.logs
    assert (run_dir / "run.json").read_bytes() == before
    assert json.loads((run_dir / LOCK_FILE).read_text())["pid"] == holder.pid  # the holder's lock is left alone


def test_several_processes_refuse_a_busy_run_folder_with_the_sentence(resumable, tmp_path):
    """``--num-processes 2`` looks before it launches (exit 2, one sentence). The processes themselves, for a lock
    taken in between, agree through the main one: each of them is refused, none goes on to load the model."""
    config_path, run_dir = resumable
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os, sys\nfrom studio.train.lock import RunLocked, lock_for_all_processes\n"
        "try:\n    lock = lock_for_all_processes(sys.argv[1])\n    said = f'taken: {lock is not None}'\n"
        "except RunLocked as error:\n    said = f'refused: {error}'\n"
        "open(os.path.join(sys.argv[2], 'rank-' + os.environ['RANK']), 'w').write(said)\n"
        "from studio.train.lock import leave_process_group\nleave_process_group()\n")  # as the CLI ends
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--main_process_port", "0", "--mixed_precision", "no", "--dynamo_backend", "no",
              str(probe), str(run_dir), str(tmp_path)]
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        _plant_lock(run_dir, holder.pid)
        done = _cli("--config", str(config_path), "--num-processes", "2", timeout=300)
        job = TrainingJob()  # the studio's way to several processes: the same command, its error on the page
        job.start(load_config(config_path), runner=ProcessRunner(2, tmp_path / "jobs"))
        assert job.wait(300)
        launched = subprocess.run(launch, cwd=ROOT, capture_output=True, text=True, timeout=300)
    finally:
        holder.kill()
        holder.wait()
    sentence = f"{run_dir} is being trained by process {holder.pid} on this machine since "
    assert done.returncode == 2 and f"error: {sentence}" in done.stderr, done.stderr[-3000:]
    assert done.stderr.count(sentence) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert job.snapshot().status == "failed" and job.snapshot().error.startswith(sentence), job.snapshot().error
    assert launched.returncode == 0, launched.stderr[-3000:]
    said = [(tmp_path / f"rank-{rank}").read_text() for rank in (0, 1)]
    assert all(line.startswith(f"refused: {sentence}") for line in said), said
    assert json.loads((run_dir / LOCK_FILE).read_text())["pid"] == holder.pid and len(RunFolder(run_dir).checkpoints()) == 1


def test_a_killed_runs_lock_and_temp_files_are_taken_over_and_cleared_at_resume(resumable):
    config_path, run_dir = resumable
    dead = _dead_pid()
    _plant_lock(run_dir, dead)
    checkpoint = RunFolder(run_dir).checkpoints()[0]
    ours = [run_dir / ".pytorch_lora_weights.safetensors.k3x_9q2a.tmp", run_dir / ".run.json.0a1b2c3d.tmp",
            checkpoint / ".pytorch_lora_weights.safetensors.zz9_abcd.tmp"]
    users = [run_dir / "notes.tmp", run_dir / ".notes.tmp", checkpoint / "my.safetensors.tmp"]
    for path in ours + users:
        path.write_bytes(b"half")
    events = []
    result = run_training(load_config(config_path), emit=events.append)
    assert result.status == "finished" and result.run_dir == run_dir
    messages = [e.message for e in events if e.kind in ("warning", "log")]
    assert any(f"took over the lock of process {dead}, which is no longer running" in m for m in messages), messages
    assert any(f"removed 3 leftover temporary file(s) of an interrupted write from {run_dir}" in m for m in messages)
    assert [p.name for p in ours if p.exists()] == []
    assert [p.name for p in users if p.exists()] == [p.name for p in users], "a user's own .tmp files stay"
    assert not (run_dir / LOCK_FILE).exists()


def test_lock_cases_without_training(tmp_path):
    """Another host's lock is never taken; an empty one left by a kill, or one whose pid now names another
    process (same pid, other start time), is; the same process cannot hold a folder twice."""
    from studio.train.lock import RunLock, RunLocked

    path = tmp_path / LOCK_FILE
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere", "started_at": time.time()}))
    with pytest.raises(RunLocked, match=rf"by process 1 on elsewhere since \d\d:\d\d; wait for it or stop it \(if "
                                        rf"that machine no longer trains it, delete {re.escape(str(path))}\)"):
        RunLock(tmp_path).acquire()
    warnings = []
    path.write_text("")
    os.utime(path, (time.time() - 60, time.time() - 60))
    RunLock(tmp_path, warnings.append).acquire()
    path.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "process_start": "1"}))
    lock = RunLock(tmp_path, warnings.append).acquire()
    taken = [w.split(": ", 1)[1] for w in warnings]
    assert len(taken) == 2 and taken[0].startswith("took over the lock of a process, which")
    assert taken[1].startswith(f"took over the lock of process {os.getpid()}, which")
    with pytest.raises(RunLocked, match=f"by process {os.getpid()} on this machine"):
        RunLock(tmp_path).acquire()
    lock.release()
    assert not path.exists() and [p.name for p in tmp_path.iterdir()] == []


def test_run_files_get_the_umask_mode_not_0600(write_config, tmp_path):
    previous = os.umask(0o022)
    try:
        result = run_training(load_config(write_config(output_dir=str(tmp_path / "modes"), max_steps=2,
                                                       save_steps=1)))
    finally:
        os.umask(previous)
    run = result.run_dir
    files = [run / "config.yaml", run / "run.json", run / "pytorch_lora_weights.safetensors", run / "tiny.safetensors",
             RunFolder(run).checkpoints()[0] / "pytorch_lora_weights.safetensors"]
    modes = {p.name if p.parent == run else f"checkpoint/{p.name}": oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {"0o644"}, modes


# -- memory before the latent cache ----------------------------------------------------------------------------
def test_resolution_4096_batch_16_exits_2_with_the_memory_sentence_and_no_traceback(write_config, tmp_path):
    config = write_config(output_dir=str(tmp_path / "big"))
    started = time.time()
    done = _cli("--config", str(config), "--set", "resolution=4096", "--set", "batch_size=16",
                env={AVAILABLE_ENV: "4096"}, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    error = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1, done.stderr[-2000:]
    assert re.match(r"error: resolution 4096 with batch_size 16 and 8 picture\(s\) needs about \d+\.\d GB to encode "
                    r"the latents \(\d+\.\d GB for one VAE call on 1 picture\(s\) of 4096x4096, \d+\.\d GB for the "
                    r"latent cache\), but only 4\.3 GB of the computer's memory is free; lower resolution, or set "
                    r"cache_latents: false .*, or free some memory$", error[0]), error[0]
    assert not list((tmp_path / "big").glob("tiny-*")), "no run folder for a refused run"
    assert time.time() - started < 100


def test_the_studio_job_shows_the_memory_sentence(write_config, tmp_path, monkeypatch):
    monkeypatch.setenv(AVAILABLE_ENV, "1024")
    job = TrainingJob()
    job.start(load_config(write_config(output_dir=str(tmp_path / "big"), resolution=2048, batch_size=16,
                                       cache_latents=False)))
    assert job.wait(120)
    snapshot = job.snapshot()
    assert snapshot.status == "failed"
    assert snapshot.error.startswith("resolution 2048 with batch_size 16 and 8 picture(s) needs about ")
    assert "16 picture(s) of 2048x2048" in snapshot.error and "lower batch_size" in snapshot.error
    assert not any("Traceback" in line or line.startswith("  File ") for line in snapshot.logs), snapshot.logs


def _vae_config(name: str) -> dict:
    if name == "tiny":
        from studio.toyworld.architecture import vae_config

        return vae_config()
    return json.loads((ROOT / "studio/models/sd15/vae/config.json").read_text())


def test_the_estimate_and_the_sentence_on_numbers():
    from types import SimpleNamespace

    from studio.train.batches import cache_chunk_size
    from studio.train.memory import encode_peak_bytes, estimate_encode, latent_bytes, refusal

    sd = _vae_config("sd15")
    # 5 live tensors of 128 channels x 4 bytes per pixel of the first stage, for 4 pictures of 512 x 512
    assert encode_peak_bytes(sd, 512, 512, 4) == 5 * 128 * 4 * 4 * 512 * 512
    assert latent_bytes(sd, 512, 512) == 2 * 4 * 64 * 64 * 4  # mean and std of a 4 x 64 x 64 float32 latent
    estimate = estimate_encode(sd, [(512, 512)] * 100 + [(640, 384)], cache_chunk_size, cache_copies=2)
    assert (estimate.call_pictures, estimate.call_size) == (4, (512, 512))
    assert estimate.cache_bytes == 2 * (100 * latent_bytes(sd, 512, 512) + latent_bytes(sd, 640, 384))
    config = SimpleNamespace(resolution=512, batch_size=4, cache_latents=True)
    assert refusal(config, 101, estimate, 1, host=8 * 10**9, gpu=None) is None
    assert refusal(config, 101, estimate, 1, host=8 * 10**9, gpu=4 * 10**9) is None
    assert refusal(config, 101, estimate, 1, host=2 * 10**9, gpu=None) == (
        "resolution 512 with batch_size 4 and 101 picture(s) needs about 2.7 GB to encode the latents (2.7 GB for "
        "one VAE call on 4 picture(s) of 512x512, 26 MB for the latent cache), but only 2.0 GB of the computer's "
        "memory is free; lower resolution, or set cache_latents: false (the latents are then encoded at each step "
        "instead of kept), or free some memory")
    on_gpu = refusal(config, 101, estimate, 1, host=64 * 10**9, gpu=2 * 10**9)
    assert "needs about 2.7 GB to encode the latents (2.7 GB for one VAE call" in on_gpu
    assert "only 2.0 GB of the GPU is free" in on_gpu
    two = refusal(config, 101, estimate, 2, host=5 * 10**9, gpu=None)  # two CPU processes share the memory
    assert "needs about 5.4 GB" in two and "in each of the processes" in two
    uncached = SimpleNamespace(resolution=1024, batch_size=8, cache_latents=False)
    per_step = estimate_encode(sd, [(1024, 1024)] * 10, lambda bucket: 8, cache_copies=0)
    message = refusal(uncached, 10, per_step, 1, host=16 * 10**9, gpu=None)
    assert "8 picture(s) of 1024x1024" in message and "lower batch_size" in message and "cache_latents" not in message


@pytest.mark.parametrize("vae, size", [("tiny", 512), ("sd15", 256)])
def test_the_estimate_covers_the_measured_peak_of_a_vae_encode(vae, size):
    """The factor of ``memory.py`` against a fresh measurement (``bench/vae_encode_memory.py``, RSS peak)."""
    def measure() -> dict:
        done = subprocess.run([sys.executable, "bench/vae_encode_memory.py", "--one", vae, str(size), "2"], cwd=ROOT,
                              capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    # The RSS peak of one process moves by about a third from run to run (allocator, load: 285-370 MB for tiny-512
    # on one machine, 481 MB once on a busy one), so the model must land within [0.75, 1.5] of it: a factor off by
    # 2x still fails. What the allocator adds only raises a peak, so a second measurement is taken when the first
    # is above the band and the lower of the two counts.
    row = measure()
    if row["model_mb"] < 0.75 * row["measured_mb"]:
        row = min(row, measure(), key=lambda r: r["measured_mb"])
    assert 0.75 * row["measured_mb"] <= row["model_mb"] <= 1.5 * row["measured_mb"], row


def test_no_shipped_preset_and_no_test_config_is_refused_on_a_modest_machine(tmp_path):
    """8 GB of memory, or a 6 GB GPU: every preset over the defaults (SD 1.5 at its resolution, 200 pictures, the
    cache with mirrored copies) and the tests' tiny model at 32 px fit."""
    from studio.config import TrainConfig, config_from_dict, config_to_dict, list_presets
    from studio.train.batches import cache_chunk_size
    from studio.train.memory import estimate_encode, refusal

    configs = [config_from_dict({**config_to_dict(TrainConfig()), **p.values}) for p in list_presets()]
    configs.append(config_from_dict({**config_to_dict(TrainConfig()), "resolution": 32, "batch_size": 8}))
    assert len(configs) > 10
    for config in configs:
        vae = _vae_config("tiny" if config.resolution <= 64 else "sd15")
        size = config.resolution
        for cache, per_call in ((True, cache_chunk_size), (False, lambda bucket: config.batch_size)):
            config = config_from_dict({**config_to_dict(config), "cache_latents": cache})
            estimate = estimate_encode(vae, [(size, size)] * 200, per_call, 2 if cache else 0)
            for host, gpu in ((8 * 10**9, None), (32 * 10**9, 6 * 10**9)):
                assert refusal(config, 200, estimate, 1, host, gpu) is None, (config.resolution, config.batch_size)
