"""``studio.py inspect FILE``: what a LoRA file is and whether ComfyUI and A1111 (FLUX.1: ComfyUI and Forge) load it
(``studio/lora/check.py``).

Exit codes: 0 every key loads in both clients, 1 some key would not load or would load wrongly, 2 the file cannot
be read as a LoRA.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from studio.cli.console import print_error
from studio.cli.exits import EXIT_FINDINGS, EXIT_OK, EXIT_USER_ERROR

if TYPE_CHECKING:  # torch is imported only when the command runs
    from studio.lora.check import LoraReport, Module

LONG_VALUE = 100  # metadata values longer than this (tag frequencies, dataset lists) are shortened
LISTED = 8  # keys listed per client before "… and N more"


def _component(name: str) -> str:
    for prefix, component in (("lora_unet_", "unet"), ("lora_te2_", "text_encoder_2"), ("lora_te1_", "text_encoder"),
                              ("lora_te_", "text_encoder")):
        if name.startswith(prefix):
            return component
    return name.split(".", 1)[0] if "." in name else "other"


def _values(numbers) -> str:
    shown = sorted({f"{n:g}" if isinstance(n, float) else str(n) for n in numbers})
    return shown[0] if len(shown) == 1 else "/".join(shown)


def module_groups(modules: dict[str, Module]) -> list[str]:
    """One line per part of the model: module count, rank, alpha and DoRA scales."""
    groups: dict[str, list] = {}
    for module in modules.values():
        if module.down is not None or module.up is not None:
            groups.setdefault(_component(module.name), []).append(module)
    lines = []
    for component, members in sorted(groups.items()):
        alphas = [m.alpha for m in members if m.alpha is not None]
        missing = len(members) - len(alphas)
        alpha = (f"alpha {_values(alphas)}" if alphas else "no alpha") + (
            f" ({missing} without)" if alphas and missing else "")
        dora = sum(m.dora_scale is not None for m in members)
        lines.append(f"{component}: {len(members)} modules, rank {_values(m.rank for m in members if m.rank)}, "
                     f"{alpha}" + (f", DoRA dora_scale on {dora}" if dora else ""))
    return lines


def _listed(keys: list[str]) -> list[str]:
    more = f" … and {len(keys) - LISTED} more" if len(keys) > LISTED else ""
    return [f"      {key}" for key in keys[:LISTED]] + ([f"     {more}"] if more else [])


def report_text(report: LoraReport) -> str:
    lines = [report.path, f"  format: {report.format}   family: {report.family or 'unknown'} "
                          f"(keys checked against {report.layout})"]
    lines += [f"  {line}" for line in module_groups(report.modules)]
    for check in report.clients:
        if check.note:
            lines.append(f"  {check.client}: not checked: {check.note}")
            continue
        mark = "✓" if check.ok else "✗"
        lines.append(f"  {check.client}: {mark} loads {check.loaded}/{check.total} keys")
        if check.ignored:
            lines.append(f"    not loaded ({check.client} logs and skips them):")
            lines += _listed(check.ignored)
        lines += [f"    ✗ {problem}" for problem in check.problems[:LISTED]]
    lines += [f"  ✗ {problem}" for problem in report.problems]
    if report.metadata:
        lines.append("  metadata:")
        for key, value in sorted(report.metadata.items()):
            shown = value if len(value) <= LONG_VALUE else value[:LONG_VALUE] + f"… ({len(value)} characters)"
            lines.append(f"    {key}: {shown}")
    else:
        lines.append("  metadata: none (no ss_* or modelspec.* fields)")
    return "\n".join(lines)


def cmd_inspect(args) -> int:
    from studio.lora.check import check_file
    from studio.lora.formats import LoraFormatError

    try:
        report = check_file(args.file, family=args.family or "")
    except (LoraFormatError, OSError, ValueError) as error:
        print_error(error)
        return EXIT_USER_ERROR
    print(report_text(report))
    return EXIT_OK if report.ok else EXIT_FINDINGS


def register(subparsers) -> None:
    """Add the ``inspect`` sub-command to the studio's argument parser."""
    inspect = subparsers.add_parser(
        "inspect", help="what a LoRA file holds and whether ComfyUI and A1111 load every key of it")
    inspect.add_argument("file", help="a LoRA .safetensors file (or a folder holding pytorch_lora_weights.safetensors)")
    inspect.add_argument("--family", choices=("sd1", "sdxl", "flux"),
                         help="check against this model family when the file does not say which it is for")
    inspect.set_defaults(handler=cmd_inspect)
