"""``bench/run_all.py --quick --dry-run`` lists every benchmark, exits 0 and loads nothing heavy (no timing here)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAMES = ("training", "grid", "caption", "scan", "startup")


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


def test_gpu_benchmark_without_a_gpu_says_so_and_writes_nothing():
    """CI has no GPU: ``bench/bench_gpu.py`` must say there is nothing to measure, exit 0 and leave the file alone."""
    before = (ROOT / "BENCHMARKS.md").read_bytes()
    done = subprocess.run([sys.executable, "bench/bench_gpu.py", "--quick"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "no CUDA device here" in done.stdout
    assert (ROOT / "BENCHMARKS.md").read_bytes() == before
