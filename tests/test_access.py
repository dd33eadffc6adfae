"""Who may touch which files, through the service the tabs call: a remote user reaches only the roots (workspace,
--data-dir folders, the shipped examples); nothing outside them is read or written; the operator works as before."""
from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

import pytest


from studio.app.access import AccessError, is_loopback, parse_data_dir
from studio.data.synthetic import synthetic_image
from studio.app import Studio

SECRET = "root:$6$SECRETHASH:19000:0:99999:7:::"


def _dataset(folder: Path, count: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "metadata.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "prompt"])
        for index in range(count):
            synthetic_image(index + 1, (64, 64)).save(folder / f"p{index}.png")
            writer.writerow([f"p{index}.png", f"a blue square number {index}"])
    return folder


def zip_folder(folder: Path, archive: Path) -> Path:
    """``folder`` zipped the way a file manager does it: every file under one top folder."""
    import zipfile

    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
        for path in sorted(folder.rglob("*")):
            handle.write(path, f"{folder.name}/{path.relative_to(folder)}")
    return archive


def fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every file and the names of every folder under ``folder`` (the sentinel's state)."""
    state = {}
    for path in sorted(folder.rglob("*")):
        relative = str(path.relative_to(folder))
        if path.is_file():
            state[relative] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
        else:
            state[relative] = ("folder", 0)
    return state


@pytest.fixture
def sentinel(tmp_path):
    """A folder outside every root: a dataset, a secret file and a would-be LoRA."""
    folder = _dataset(tmp_path / "host" / "photos")
    (tmp_path / "host" / "secret.txt").write_text(SECRET + "\n")
    (tmp_path / "host" / "other.safetensors").write_bytes(b"not really")
    return tmp_path / "host"


@pytest.fixture
def remote(tmp_path):
    return Studio(tmp_path / "workspace", remote=True)


@pytest.fixture
def untouched(sentinel):
    """Fails the test if anything under the sentinel folder was written, created or deleted."""
    before = fingerprint(sentinel)
    yield sentinel
    assert fingerprint(sentinel) == before


def test_loopback_hosts_are_told_apart_from_reachable_ones():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.5.0.1", "localhost", "::1", "[::1]"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "192.168.1.5", "::", "studio.example.org", ""))


def test_a_remote_user_cannot_load_scan_or_caption_a_host_folder(remote, untouched):
    photos = str(untouched / "photos")
    with pytest.raises(AccessError, match="outside the folders this studio shares"):
        remote.datasets.load(photos)
    with pytest.raises(AccessError, match="outside"):
        remote.datasets.scan(photos)
    with pytest.raises(AccessError, match="outside"):
        remote.captions.open(photos)
    with pytest.raises(AccessError, match="outside"):
        remote.datasets.save_captions(photos, [("p0.png", "overwritten")])
    for climb in ("../host/photos", "workspace/../../host/photos"):
        with pytest.raises(AccessError):
            remote.datasets.load(climb)
    assert remote.access.resolve("~/") == remote.workspace / "~"  # no way into the server's home folder


def test_a_link_inside_the_workspace_does_not_lead_out_of_it(remote, untouched):
    (remote.workspace / "shortcut").symlink_to(untouched / "photos")
    with pytest.raises(AccessError, match="shortcut"):
        remote.datasets.load(str(remote.workspace / "shortcut"))
    with pytest.raises(AccessError):
        remote.datasets.save_captions("shortcut", [("p0.png", "overwritten")])


@pytest.mark.parametrize("setting, value", [
    ("metadata_path", "{host}/secret.txt"),
    ("train_data_dir", "{host}/photos"),
    ("output_dir", "{host}/runs"),
    ("output_dir", "../../host/runs"),
    ("prior_data_dir", "{host}/photos"),
    ("base_model", "{host}/photos"),
    ("base_model", "{host}/other.safetensors"),
    ("base_model_config", "{host}/photos"),
    ("init_lora", "{host}/other.safetensors"),
    ("resume", "{host}/photos"),
])
def test_every_path_setting_of_a_training_config_is_confined(remote, untouched, setting, value):
    data = _dataset(remote.workspace / "datasets" / "mine")
    values = {"train_data_dir": str(data), "output_dir": "output/mine", setting: value.format(host=untouched)}
    yaml_text = remote.configs.yaml_with(remote.configs.yaml(remote.configs.default()), values)
    with pytest.raises(AccessError) as error:
        remote.training.start(yaml_text)
    assert setting in str(error.value)
    assert "SECRETHASH" not in str(error.value) and "root:" not in str(error.value)
    assert remote.training.snapshot().status == "idle"


def test_a_model_name_that_is_a_folder_beside_the_server_process_is_a_path_too(remote, untouched, monkeypatch):
    monkeypatch.chdir(untouched)
    data = _dataset(remote.workspace / "datasets" / "mine")
    yaml_text = remote.configs.yaml_with(remote.configs.yaml(remote.configs.default()),
                                        {"train_data_dir": str(data), "base_model": "photos"})
    with pytest.raises(AccessError, match="base_model"):
        remote.training.start(yaml_text)


def test_pickle_base_models_are_the_operators_choice_alone(remote):
    data = _dataset(remote.workspace / "datasets" / "mine")
    yaml_text = remote.configs.yaml_with(remote.configs.yaml(remote.configs.default()),
                                        {"train_data_dir": str(data), "allow_pickle": True})
    with pytest.raises(AccessError, match="allow_pickle"):
        remote.training.start(yaml_text)


def test_a_config_file_outside_the_roots_is_not_imported_but_an_upload_is(remote, untouched, tmp_path):
    (untouched / "config.yaml").unlink(missing_ok=True)
    with pytest.raises(AccessError, match="outside"):
        remote.configs.import_file(untouched / "secret.txt")
    uploaded = tmp_path / "gradio-upload" / "mine.yaml"
    uploaded.parent.mkdir()
    uploaded.write_text("lora_rank: 12\n")
    assert "lora_rank: 12" in remote.configs.import_file(uploaded, uploaded=True)


def test_prepare_writes_only_where_a_remote_user_may_write(remote, untouched):
    data = _dataset(remote.workspace / "datasets" / "mine")
    remote.datasets.scan(str(data), resolution=32)
    for out in (str(untouched / "copy"), "../../host/copy", "../../../.."):
        with pytest.raises(AccessError, match="clean copy"):
            remote.datasets.prepare_copy(str(data), out)
    result = remote.datasets.prepare_copy(str(data), "prepared/ok")
    out = Path(result.out_dir)
    assert out.is_relative_to(remote.workspace) and len(list(out.glob("*.png"))) == 3


def test_read_only_data_dirs_can_be_read_but_not_written(tmp_path, untouched):
    shared = _dataset(tmp_path / "shared" / "set")
    before = fingerprint(tmp_path / "shared")
    studio = Studio(tmp_path / "workspace", remote=True, data_dirs=(str(tmp_path / "shared"),))
    assert len(studio.datasets.load(str(shared)).rows) == 3
    review = studio.datasets.scan(str(shared), resolution=32)
    assert review.report_path.is_relative_to(studio.workspace)
    with pytest.raises(AccessError, match="read-only"):
        studio.datasets.save_captions(str(shared), [("p0.png", "changed")])
    result = studio.datasets.save_choices(str(shared), {"p0.png": False})
    assert result.saved == {} and "read-only" in result.refused["p0.png"]
    desk = studio.captions
    rows = desk.open(str(shared)).rows
    for action in (lambda: desk.edit(str(shared), rows, "prefix", "zq"), lambda: desk.undo(str(shared), rows),
                   lambda: desk.start_auto_caption(str(shared), rows, "", 1, False)):
        with pytest.raises(AccessError, match="read-only"):
            action()
    assert fingerprint(tmp_path / "shared") == before


def test_writable_data_dirs_take_captions_and_choices(tmp_path):
    shared = _dataset(tmp_path / "shared" / "set")
    studio = Studio(tmp_path / "workspace", remote=True, data_dirs=(f"{tmp_path / 'shared'}:rw",))
    studio.datasets.save_captions(str(shared), [("p0.png", "zq, a blue square"), ("p1.png", "b"), ("p2.png", "c")])
    assert "zq, a blue square" in (shared / "metadata.csv").read_text()
    studio.datasets.scan(str(shared), resolution=32)
    assert studio.datasets.save_choices(str(shared), {"p1.png": False}).saved == {"p1.png": False}


def test_data_dir_arguments_name_existing_folders(tmp_path):
    assert parse_data_dir(f"{tmp_path}:rw").writable and not parse_data_dir(str(tmp_path)).writable
    with pytest.raises(AccessError, match="no such folder"):
        parse_data_dir(str(tmp_path / "missing"))


def test_the_shipped_demo_datasets_are_readable_and_stay_read_only_for_everyone(tmp_path):
    for studio in (Studio(tmp_path / "w1", remote=True), Studio(tmp_path / "w2")):
        assert len(studio.datasets.load("star").rows) > 0
        with pytest.raises(AccessError, match="ship with the studio"):
            studio.datasets.save_captions("star", [("x.png", "overwritten")])


def test_the_operator_still_names_any_folder(tmp_path, sentinel):
    studio = Studio(tmp_path / "workspace")
    photos = sentinel / "photos"
    assert len(studio.datasets.load(str(photos)).rows) == 3
    studio.datasets.save_captions(str(photos), [("p0.png", "new caption")])
    assert "new caption" in (photos / "metadata.csv").read_text()
    out = studio.datasets.output_folder(photos, str(sentinel / "copy"))
    assert out == sentinel / "copy"
    assert studio.configs.import_file(_write(sentinel / "c.yaml", "lora_rank: 6\n")).count("lora_rank: 6") == 1


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_remote_relative_paths_start_in_the_workspace(remote):
    data = _dataset(remote.workspace / "datasets" / "mine")
    assert remote.datasets.load("datasets/mine").folder == data.resolve()
    assert remote.access.resolve("output/x", write=True) == remote.workspace / "output" / "x"


def test_paths_with_nul_or_absurd_length_are_refused(remote):
    for text in ("data\x00set", "a/" * 3000):
        with pytest.raises(AccessError, match="not a usable path"):
            remote.datasets.load(text)


def test_a_grid_reads_no_lora_outside_the_run_or_the_workspace(remote, untouched, monkeypatch):
    run = remote.workspace / "output" / "mine" / "mine-20260101-000000"
    (run / "checkpoints" / "step-000002").mkdir(parents=True)
    (run / "config.yaml").write_text("base_model: ''\n")
    (run / "pytorch_lora_weights.safetensors").write_bytes(b"x")
    with pytest.raises(AccessError, match="checkpoint"):
        remote.evaluation.render_grid(run.name, str(untouched / "other.safetensors"), ["a star"], [0], [0.5])
    with pytest.raises(AccessError, match="lora"):
        remote.evaluation.render_grid(run.name, "final", [f"a star <lora:{untouched / 'other.safetensors'}:0.5>"], [0], [0.5])
    monkeypatch.chdir(untouched)  # a bare name is looked up beside the server process too
    with pytest.raises(AccessError, match="lora:other"):
        remote.evaluation.render_grid(run.name, "final", ["a star <lora:other.safetensors:0.5>"], [0], [0.5])
    (run / "config.yaml").write_text(f"base_model: {untouched / 'photos'}\n")
    with pytest.raises(AccessError, match="base model"):
        remote.evaluation.render_grid(run.name, "final", ["a star"], [0], [0.5])


def test_a_caption_model_outside_the_roots_is_refused(remote, untouched):
    data = _dataset(remote.workspace / "datasets" / "mine")
    desk = remote.captions
    rows = desk.open(str(data)).rows
    with pytest.raises(AccessError, match="caption model"):
        desk.start_auto_caption(str(data), rows, str(untouched / "photos"), 1, False)


def test_a_remote_user_trains_on_an_uploaded_dataset_with_a_model_from_a_data_dir(tmp_path, tiny_sd_dir):
    studio = Studio(tmp_path / "workspace", remote=True, data_dirs=(str(tiny_sd_dir.parent),))
    archive = zip_folder(_dataset(tmp_path / "upload-src" / "set", count=4), tmp_path / "set.zip")
    result = studio.datasets.import_zip(archive)
    assert result.folder.parent == studio.workspace / "datasets" and len(result.written) == 5
    values = {"train_data_dir": str(result.folder), "base_model": str(tiny_sd_dir), "resolution": 32,
              "batch_size": 2, "max_steps": 2, "save_steps": 0, "sample_steps": 0, "validation_steps": 0,
              "output_dir": "output/remote"}
    studio.training.start(studio.configs.yaml_with(studio.configs.yaml(studio.configs.default()), values))
    assert studio.training.wait(timeout=300)
    snapshot = studio.training.snapshot()
    assert snapshot.status == "finished", snapshot.error
    assert Path(snapshot.run_dir).is_relative_to(studio.workspace / "output" / "remote")
    assert os.path.isfile(Path(snapshot.run_dir) / "pytorch_lora_weights.safetensors")
