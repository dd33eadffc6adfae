"""House rules a reviewer would otherwise check by hand."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "studio"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_ui_package_imports_gradio():
    offenders = [
        str(path.relative_to(PACKAGE.parent))
        for path in PACKAGE.rglob("*.py")
        if "gradio" in _imports(path) and PACKAGE / "ui" not in path.parents
    ]
    assert offenders == [], f"gradio imported outside studio/ui/: {offenders}"


def test_yaml_is_only_read_with_safe_load():
    unsafe = [
        str(path.relative_to(PACKAGE.parent))
        for path in PACKAGE.rglob("*.py")
        if "yaml.load(" in path.read_text(encoding="utf-8") or "yaml.unsafe_load" in path.read_text(encoding="utf-8")
    ]
    assert unsafe == []


def test_the_cli_starts_without_importing_torch_or_gradio():
    import subprocess
    import sys

    code = "import sys, studio.cli; studio.cli.build_parser(); print('torch' in sys.modules, 'gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_no_remote_code_and_no_unguarded_pickle_loading():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "trust_remote_code=True" not in text, path
        for line in text.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{path}: {line.strip()}"
