"""Helpers the benchmarks share: the machine and library versions, peak memory, BENCHMARKS.md sections.

Nothing here imports torch at module level, so ``run_all.py --dry-run`` stays light.
"""
from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
VERSIONED = ("torch", "diffusers", "transformers", "peft", "accelerate", "gradio")


def nproc() -> str:
    """``nproc`` without OMP_NUM_THREADS (GNU nproc reports that variable when it is set)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT")}
    try:
        return subprocess.run(["nproc"], capture_output=True, text=True, check=True, env=env).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return str(os.cpu_count())


def cpu_model() -> str:
    """The ``model name`` line of /proc/cpuinfo, or what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def total_ram_gb() -> float:
    try:
        import psutil

        return psutil.virtual_memory().total / 2**30
    except ImportError:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def versions() -> dict[str, str]:
    """Installed versions of the libraries the numbers depend on (read from package metadata, no imports)."""
    found = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def gpu_name() -> str:
    """The CUDA device's name, or "none" (torch is imported only when it already is)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return "none"


def machine() -> dict:
    """What the numbers were measured on; the load average says how busy the shared CPU was."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"nproc": nproc(), "cpu": cpu_model(), "ram_gb": round(total_ram_gb(), 1),
            "platform": platform.platform(), "load_average": [round(value, 2) for value in load],
            "gpu": gpu_name(), "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "versions": versions()}


def describe_machine(info: dict) -> str:
    """One markdown paragraph naming the machine, the versions and the date."""
    v = info["versions"]
    load = ", ".join(f"{value:.2f}" for value in info["load_average"])
    libs = ", ".join(f"{name} {v[name]}" for name in ("torch", "diffusers", "transformers", "peft", "accelerate",
                                                      "gradio"))
    return (f"Machine: {info['cpu']}, {info['nproc']} CPUs (`nproc`), {info['ram_gb']} GB RAM, GPU: {info['gpu']}; "
            f"{info['platform']}; load average {load} (1/5/15 min) at the start. Python {v['python']}, {libs}. "
            f"Date: {info['date']}.")


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB.

    ``VmHWM`` from /proc/self/status belongs to the current process image only; ``ru_maxrss`` is the fallback, but
    on Linux it carries over the parent's high-water mark through fork + exec, which would blur a small child.
    """
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def replace_section(title: str, text: str, path: Path = BENCHMARKS_MD, first: bool = False) -> Path:
    """Replace the ``title`` section (up to the next ``## ``) of ``path`` with ``text``, leaving the others.

    A missing section is appended, or put right after the ``# `` heading when ``first``. The file is re-read just
    before writing, since other benchmark scripts rewrite their own sections of the same file.
    """
    from studio.util.fs import atomic_write_text

    current = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    lines = current.splitlines(keepends=True)
    body = text.rstrip("\n") + "\n"
    start = next((i for i, line in enumerate(lines) if line.rstrip() == title), None)
    if start is not None:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        rest = "".join(lines[end:])
        updated = "".join(lines[:start]) + body + ("\n" + rest if rest else "")
    elif first:
        head = next((i + 1 for i, line in enumerate(lines) if line.startswith("# ")), 0)
        rest = "".join(lines[head:]).lstrip("\n")
        updated = "".join(lines[:head]) + "\n" + body + ("\n" + rest if rest else "")
    else:
        updated = current.rstrip("\n") + "\n\n" + body
    return atomic_write_text(path, updated.rstrip("\n") + "\n")


def markdown_table(header: list[str], rows: list[list], align: str = "") -> str:
    """A markdown table; ``align`` holds one letter per column, ``l`` or ``r`` (default: first left, rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(met: bool | None) -> str:
    """The goal column: "met", "NOT met", or "n/a" where no goal applies or nothing was measured."""
    return "n/a" if met is None else ("met" if met else "NOT met")


def unwrap(text: str) -> str:
    """Hard-wrapped source text as markdown: one line per paragraph or list item, double backticks single."""
    out: list[str] = []
    for line in text.replace("``", "`").splitlines():
        stripped = line.strip()
        if stripped and out and out[-1] and not stripped.startswith("- "):
            out[-1] += " " + stripped
        else:
            out.append(stripped)
    return "\n".join(out)
