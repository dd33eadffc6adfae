"""Start-up: ``python studio.py`` until the page answers HTTP 200, against a bare gradio app in the same run.

    python bench/bench_startup.py [--repeats 3]

The reference is the smallest gradio app there is (one Markdown in a Blocks), started the same way, so the ratio
shows what the studio itself adds on top of importing and serving gradio. Goal: the studio up in < 10 s here.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BARE_APP = (
    "import gradio as gr\n"
    "with gr.Blocks() as app:\n    gr.Markdown('hello')\n"
    "app.launch(server_name='127.0.0.1', server_port={port}, prevent_thread_lock=True, quiet=True)\n"
    "app.block_thread()\n"
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def time_to_http(command: list[str], port: int, timeout: float = 120) -> float:
    """Seconds from process start until http://127.0.0.1:port/ answers 200."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    try:
        while time.perf_counter() - started < timeout:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
                    if response.status == 200:
                        return time.perf_counter() - started
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"{command} not up in {timeout} s")
    finally:
        process.terminate()
        process.wait(timeout=30)


def run(quick: bool = False, repeats: int | None = None) -> dict:
    repeats = repeats or (1 if quick else 3)
    studio_times, bare_times = [], []
    with tempfile.TemporaryDirectory() as workspace:
        for _ in range(repeats):
            port = _free_port()
            bare_times.append(time_to_http([sys.executable, "-c", BARE_APP.format(port=port)], port))
            port = _free_port()
            studio_times.append(time_to_http(
                [sys.executable, "studio.py", "--port", str(port), "--workspace", workspace], port))
    studio_s, bare_s = statistics.median(studio_times), statistics.median(bare_times)
    return {
        "studio_s": round(studio_s, 2), "bare_gradio_s": round(bare_s, 2), "ratio": round(studio_s / bare_s, 2),
        "repeats": repeats, "goal_met": studio_s < 10.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    result = run(repeats=args.repeats)
    print(f"studio up in {result['studio_s']} s (median of {result['repeats']}); bare gradio app "
          f"{result['bare_gradio_s']} s; ratio {result['ratio']}x; goal < 10 s: "
          f"{'met' if result['goal_met'] else 'NOT met'}")


if __name__ == "__main__":
    main()
