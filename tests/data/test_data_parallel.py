"""The scan's process pool: a forkserver when the caller has other threads, memory reuse in workers and inline."""
from __future__ import annotations

import operator
import threading

from PIL import Image

from studio.data.parallel import _start_context, map_files, reused_image_memory
from studio.data.scan import measure_file, scan_folder
from studio.data.synthetic import synthetic_image


def _measures(report):
    return [(image.relpath, image.sha256, image.phash, image.sharpness, image.chroma) for image in report.images]


def test_a_threaded_caller_gets_a_forkserver_pool_and_the_same_results(tmp_path):
    for seed in range(4):
        synthetic_image(seed, (640, 480)).save(tmp_path / f"{seed}.jpg", quality=90)
    inline = scan_folder(tmp_path, workers=1, min_side=256)
    found = {}

    def scan_in_a_thread():
        found["method"] = _start_context(measure_file).get_start_method()
        found["report"] = scan_folder(tmp_path, workers=2, min_side=256)

    thread = threading.Thread(target=scan_in_a_thread)
    thread.start()
    thread.join()
    assert found["method"] == "forkserver"
    assert _measures(found["report"]) == _measures(inline) and len(inline.images) == 4


def test_workers_keep_image_memory_and_inline_runs_give_the_setting_back():
    before = Image.core.get_blocks_max()
    results, stopped = map_files(operator.call, [Image.core.get_blocks_max] * 4, workers=2)
    assert results == [16] * 4 and not stopped
    results, _ = map_files(operator.call, [Image.core.get_blocks_max] * 2, workers=1)
    assert results == [max(before, 16)] * 2 and Image.core.get_blocks_max() == before
    with reused_image_memory():
        with reused_image_memory():
            assert Image.core.get_blocks_max() == max(before, 16)
        assert Image.core.get_blocks_max() == max(before, 16)
    assert Image.core.get_blocks_max() == before
