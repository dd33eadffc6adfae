"""Will a LoRA file load in ComfyUI and A1111 (FLUX.1: ComfyUI and Forge), on which layers, at which scale: the
report behind the save-time check and ``studio.py inspect``.

``check_tensors`` groups a file's tensors by module, looks every module up with both clients' rules
(``clients.py``) on a base-model layout (``layout.py``) and lists what each client loads, ignores or would patch
wrongly; ``expected`` (the layer each module was trained on) turns a module that lands on another layer into a
problem. On FLUX.1 a module must also land on a weight the model has, in rows that exist (``flux_keys``).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import torch

from . import clients
from .layout import BaseLayout

CLIENTS = ("ComfyUI", "A1111")
FLUX_CLIENTS = ("ComfyUI", "Forge")  # A1111 has no FLUX.1
FORGE_MOST_UNMATCHED = 12  # Forge loads nothing of a file with more keys that match no layer


@dataclass
class Module:
    """One module of a file: its tensor keys, LoRA pair, alpha and DoRA scale (None when absent)."""

    name: str
    keys: list[str] = field(default_factory=list)
    up: torch.Tensor | None = None
    down: torch.Tensor | None = None
    alpha: float | None = None
    dora_scale: torch.Tensor | None = None

    @property
    def rank(self) -> int | None:
        return int(self.down.shape[0]) if self.down is not None else None


@dataclass
class ClientCheck:
    client: str
    loaded: int = 0  # tensor keys it uses
    total: int = 0
    ignored: list[str] = field(default_factory=list)  # keys it logs as not loaded and skips
    problems: list[str] = field(default_factory=list)  # layers it would patch wrongly, or not at all
    note: str = ""  # why it was not checked

    @property
    def ok(self) -> bool:
        """Every key loads on the right layer (a client that was not checked fails nothing)."""
        return not self.ignored and not self.problems


@dataclass
class LoraReport:
    path: str
    format: str
    family: str
    layout: str  # which base model the keys were checked against
    modules: dict[str, Module]
    clients: list[ClientCheck]
    problems: list[str] = field(default_factory=list)  # about the file itself (alpha, metadata)
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems and all(c.ok for c in self.clients)

    def first_problem(self) -> str:
        for check in self.clients:
            for problem in check.problems + [f"{key} is not loaded" for key in check.ignored]:
                return f"{check.client}: {problem}"
        return self.problems[0] if self.problems else ""

    def summary(self) -> str:
        """One line: "loads in ComfyUI and A1111: 528/528 keys, alpha 2.0 on every module" or what fails."""
        checked = [c for c in self.clients if not c.note]
        unchecked = "".join(f" ({c.client} not checked: {c.note})" for c in self.clients if c.note)
        if self.ok and checked:
            names = " and ".join(c.client for c in checked)
            return (f"loads in {names}: {checked[0].loaded}/{checked[0].total} keys, "
                    f"{alpha_summary(self.modules)}{unchecked}")
        parts = [f"{c.client} {c.loaded}/{c.total} keys" for c in checked]
        return f"{', '.join(parts)}; {self.first_problem()}{unchecked}"


def alpha_summary(modules: dict[str, Module]) -> str:
    alphas = {m.alpha if m.alpha is not None else None for m in modules.values()}
    if alphas == {None}:
        return "no alpha (clients apply scale 1.0)"
    if len(alphas) == 1:
        return f"alpha {alphas.pop():g} on every module"
    missing = sum(m.alpha is None for m in modules.values())
    shown = sorted(a for a in alphas if a is not None)
    return f"alpha {', '.join(f'{a:g}' for a in shown)}" + (f"; {missing} modules without alpha" if missing else "")


def group_modules(tensors: dict[str, torch.Tensor]) -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for key, tensor in tensors.items():
        name = clients.module_name(key)
        module = modules.setdefault(name, Module(name))
        module.keys.append(key)
        suffix = key[len(name):]
        if suffix in {up for up, _ in clients.COMFY_PAIRS}:
            module.up = tensor
        elif suffix in {down for _, down in clients.COMFY_PAIRS}:
            module.down = tensor
        elif suffix == ".alpha":
            module.alpha = float(tensor.float().reshape(-1)[0]) if tensor.numel() == 1 else float("nan")
        elif suffix == ".dora_scale":
            module.dora_scale = tensor
    return modules


def _target_shape(layout: BaseLayout, target) -> torch.Size | str | None:
    """The shape of the weight (FLUX.1: of the rows) ``target`` patches; a sentence part when the base model has
    no such weight; None when the layout does not know."""
    from .flux_keys import slice_shape

    component, path = target
    if component == "unet":
        return layout.unet.get(path, (None, None))[1]
    if component == "transformer":
        return slice_shape(layout.slices[path], layout.bfl)
    if component == "bfl":
        return layout.bfl[path]
    return layout.text.get(component, {}).get(path)


def _fit_problem(module: Module, shape, client: str) -> str | None:
    """Why the client cannot apply this module to a weight of ``shape`` (None: it can)."""
    if module.up is None or module.down is None or shape is None:
        return None
    if module.up.shape[0] != shape[0] or module.down.flatten(1).shape[1] != torch.Size(shape[1:]).numel():
        return (f"{module.name}: up {tuple(module.up.shape)} x down {tuple(module.down.shape)} does not fit the "
                f"layer's weight {tuple(shape)}")
    if module.dora_scale is not None and client == "A1111" and module.dora_scale.numel() != shape[1]:
        return (f"{module.name}: dora_scale {tuple(module.dora_scale.shape)} is not one value per input channel "
                f"({shape[1]}), the only axis A1111 applies")
    return None


def _key_map(client: str, layout: BaseLayout) -> dict:
    if client == "ComfyUI":
        return clients.comfyui_key_map(layout)
    return clients.forge_key_map(layout) if client == "Forge" else clients.a1111_modules(layout)


def _check_client(client: str, modules: dict[str, Module], layout: BaseLayout, expected, shapes: bool
                  ) -> ClientCheck:
    check = ClientCheck(client, total=sum(len(m.keys) for m in modules.values()))
    if client == "A1111" and not layout.standard:
        check.note = "A1111 builds only the released SD 1.x / SDXL block layouts, and this base model has another"
        return check
    key_map = _key_map(client, layout)
    partial = clients.a1111_partial_attention(modules, key_map) if client == "A1111" else {}
    for name, missing in partial.items():
        check.ignored += modules[name].keys
        check.problems.append(f"{name} is skipped: A1111 patches this attention layer of the second text encoder "
                              f"only with its q, k, v and out_proj together, and the file lacks {missing}")
    for name, module in modules.items():
        if name in partial:
            continue
        target = key_map.get(name) if client == "ComfyUI" else clients.a1111_lookup(name, key_map)
        usable = module.up is not None and (client == "ComfyUI" or module.down is not None)
        if target is None or not usable:
            check.ignored += module.keys
            if target is not None and client == "A1111":
                check.problems.append(f"{name} has no lora_up/lora_down pair: A1111 refuses the whole file")
            continue
        check.loaded += len(module.keys)
        want = (expected or {}).get(name)
        if want is not None and tuple(want) != tuple(target):
            check.problems.append(f"{name} patches {target[0]} {target[1]} instead of {want[0]} {want[1]}")
        shape = _target_shape(layout, target)
        problem = f"{name}: {shape}" if isinstance(shape, str) else (
            _fit_problem(module, shape, client) if shapes else None)
        if problem:
            check.problems.append(problem)
    if client == "Forge" and len(check.ignored) > FORGE_MOST_UNMATCHED:
        check.problems.append(f"{len(check.ignored)} keys match no layer, more than the {FORGE_MOST_UNMATCHED} "
                              "Forge tolerates: it loads nothing of this file")
    return check


def _alpha_problems(modules: dict[str, Module], metadata: dict[str, str], names: tuple[str, ...]) -> list[str]:
    """Where the clients' scale (alpha / rank, 1.0 without an alpha tensor) differs from the trained one."""
    trained = _trained_alpha(metadata)
    problems = []
    for module in modules.values():
        if module.down is None:
            continue
        if module.alpha is None and trained is not None and abs(trained - module.rank) > 1e-6:
            problems.append(f"{module.name} has no .alpha tensor: {' and '.join(names)} apply scale 1.0, not the "
                            f"trained alpha/rank = {trained:g}/{module.rank}")
            break
        if module.alpha is not None and module.alpha != module.alpha:
            problems.append(f"{module.name}.alpha is not a single number")
            break
    return problems


def _trained_alpha(metadata: dict[str, str]) -> float | None:
    try:
        config = json.loads(metadata.get("lora_adapter_metadata", "{}"))
        value = next((config[f"{part}.lora_alpha"] for part in ("unet", "transformer", "text_encoder")
                      if f"{part}.lora_alpha" in config), metadata.get("ss_network_alpha"))
        return float(value) if value not in (None, "None", "") else None
    except (TypeError, ValueError):
        return None


def check_tensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str], layout: BaseLayout, *,
                  fmt: str = "kohya", path: str = "", layout_name: str = "",
                  expected: dict[str, tuple[str, str]] | None = None, shapes: bool = True
                  ) -> LoraReport:
    """``shapes``: also require every module to fit its layer's weight (off when the base model is a stand-in)."""
    modules = group_modules(tensors)
    names = FLUX_CLIENTS if layout.family == "flux" else CLIENTS
    checks = [_check_client(client, modules, layout, expected, shapes) for client in names]
    shown = {k: v for k, v in metadata.items() if k.startswith(("ss_", "sshs_", "modelspec."))}
    return LoraReport(str(path), fmt, layout.family, layout_name or f"the {layout.family} base model", modules,
                      checks, _alpha_problems(modules, metadata, names), shown)


def check_file(path: str | os.PathLike, family: str = "") -> LoraReport:
    """The report for any LoRA file: its keys checked against the layer names of its family's released model
    (SD 1.5 / SDXL base / FLUX.1-dev); shapes are not compared, since the file may be for a model of other widths."""
    from safetensors.torch import load_file

    from .formats import LoraFormatError, _read_metadata, detect_format, lora_file_path
    from .info import _family_name
    from .layout import standard_layout

    source = lora_file_path(path)
    tensors, metadata = load_file(str(source)), _read_metadata(source)
    try:
        fmt = detect_format(tensors)
    except LoraFormatError as error:  # keys of several layouts (or misspelt ones) are still worth a report
        if "base-model" in str(error) or not tensors:
            raise LoraFormatError(f"{source.name}: {error}") from error
        fmt = "mixed"
    family = family or _family_name(tensors, metadata) or "sd1"
    names = {"sd1": "SD 1.5", "sdxl": "SDXL base 1.0", "flux": "FLUX.1-dev"}
    return check_tensors(tensors, metadata, standard_layout(family), fmt=fmt, path=str(source),
                         layout_name=f"the {names.get(family, family)} layout", shapes=False)
