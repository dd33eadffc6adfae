"""House rules a reviewer would otherwise check by hand."""
from __future__ import annotations

import ast
import io
import re
import tokenize
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


ENGINE_PACKAGES = ("caption", "config", "data", "eval", "lora", "models", "toyworld", "train", "util")
APPLICATION_MODULES = ("studio.app", "studio.ui")
# UI modules that still import past the application layer; the rule below covers every other one
UI_NOT_YET_ON_THE_APP_LAYER: tuple[str, ...] = ()


def _studio_imports(path: Path) -> set[str]:
    """The ``studio.…`` modules a file imports anywhere in it (``from studio import x`` counts as ``studio.x``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "studio" and node.level == 0:
            names.update(f"studio.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {name for name in names if name.startswith("studio.")}


def test_the_studio_package_holds_only_packages_at_its_top():
    """Every module belongs to a layer's package; the top of ``studio/`` keeps only the entry points."""
    loose = sorted(path.name for path in PACKAGE.glob("*.py") if path.name not in ("__init__.py", "__main__.py"))
    assert loose == []


def test_the_engine_never_imports_the_application_layer_or_the_ui():
    offenders = [
        f"{path.relative_to(PACKAGE.parent)} imports {name}"
        for package in ENGINE_PACKAGES
        for path in (PACKAGE / package).rglob("*.py")
        for name in _studio_imports(path)
        if name.startswith(APPLICATION_MODULES)
    ]
    assert offenders == []


def test_the_engine_never_imports_the_cli():
    """The CLI (studio/cli/) is a front end: its verbs call the engine, and the engine keeps no command modules
    that would import the CLI back (for its exit codes, say)."""
    offenders = [
        f"{path.relative_to(PACKAGE.parent)} imports {name}"
        for package in ENGINE_PACKAGES
        for path in (PACKAGE / package).rglob("*.py")
        for name in _studio_imports(path)
        if name == "studio.cli" or name.startswith("studio.cli.")
    ]
    relative = [
        f"{path.relative_to(PACKAGE.parent)} imports ..cli"
        for package in ENGINE_PACKAGES
        for path in (PACKAGE / package).rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.level >= 2
        and (node.module == "cli" or (node.module or "").startswith("cli.")
             or (not node.module and any(alias.name == "cli" for alias in node.names)))
    ]
    assert offenders + relative == []


def test_the_tabs_import_only_the_application_layer():
    """A tab reaches the engine through ``studio.app`` (the studio's parts, and the engine names it re-exports)."""
    offenders = [
        f"{path.relative_to(PACKAGE.parent)} imports {name}"
        for path in sorted((PACKAGE / "ui").glob("*.py"))
        if path.name not in UI_NOT_YET_ON_THE_APP_LAYER
        for name in _studio_imports(path)
        if not name.startswith(("studio.app", "studio.ui"))
    ]
    assert offenders == []
    assert all((PACKAGE / "ui" / name).is_file() for name in UI_NOT_YET_ON_THE_APP_LAYER)


def test_paths_from_the_page_are_checked_in_one_place():
    """Only studio/app/access.py turns a typed path into a resolved one for the tabs (the tabs call the service)."""
    tabs = [path for path in (PACKAGE / "ui").glob("*.py")]
    offenders = [str(path.relative_to(PACKAGE.parent)) for path in tabs
                 if "os.path.realpath" in path.read_text(encoding="utf-8") or ".resolve()" in path.read_text(encoding="utf-8")]
    assert offenders == []


def test_every_character_the_studio_shows_has_a_glyph_in_dejavu_sans():
    """Debian's chromium with fonts-dejavu-core draws emoji such as ✅ or ❌ as empty boxes; the studio's marks must
    come from DejaVu Sans (✓ ✗ ⚠ ■), which is also matplotlib's own font."""
    import os

    import matplotlib
    from matplotlib import ft2font

    font = ft2font.FT2Font(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf"))
    covered = set(font.get_charmap())
    missing = sorted(
        f"{path.relative_to(PACKAGE.parent)}: {char!r} (U+{ord(char):04X})"
        for path in PACKAGE.rglob("*.py")
        for char in set(path.read_text(encoding="utf-8"))
        if ord(char) > 127 and ord(char) not in covered
    )
    assert missing == [], f"characters without a glyph in DejaVu Sans: {missing}"


# The toy world's own words (its new shapes, style and trigger); the engine must name none of them.
TOY_WORLD_WORDS = ("star", "stars", "striped", "stripe", "stripes", "zq", "circle", "square", "triangle")
# Examples written for the user in messages, not logic: the words stay, as an illustration of the syntax.
TOY_WORLD_EXAMPLES = {"generate.py": ("'a red zq star <lora:star:0.7>'",)}


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes of a module, its classes and its functions."""
    owners = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, owners) and node.body and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant) and isinstance(node.body[0].value.value, str)}


def _code_words(path: Path) -> list[str]:
    """Identifiers and string literals of ``path``, without docstrings, comments and the allowed examples."""
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text)
    skip = _docstrings(tree)
    strings = [node.value for node in ast.walk(tree)
               if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip]
    for example in TOY_WORLD_EXAMPLES.get(path.name, ()):
        strings = [s.replace(example, "") for s in strings]
    names = [token.string for token in tokenize.generate_tokens(io.StringIO(text).readline)
             if token.type == tokenize.NAME]
    return names + strings


def _without_escapes(text: str) -> str:
    """``text`` with backslash escapes blanked, so that a regex's ``\\bword\\b`` shows its word."""
    return re.sub(r"\\.", " ", text)


def test_the_evaluation_engine_names_no_toy_world_concept():
    """Concept checkers plug in (studio/eval/concepts.py): the engine neither imports the toy world nor matches
    its words in code; docstrings and comments may use them as examples."""
    pattern = re.compile(r"(?<![a-z])(" + "|".join(TOY_WORLD_WORDS) + r")(?![a-z])")
    imports = [f"{path.name} imports {name}" for path in sorted((PACKAGE / "eval").rglob("*.py"))
               for name in _studio_imports(path) if name.startswith("studio.toyworld")]
    relative = [f"{path.name} imports ..toyworld" for path in sorted((PACKAGE / "eval").rglob("*.py"))
                for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                if isinstance(node, ast.ImportFrom) and node.level >= 2 and (node.module or "").startswith("toyworld")]
    words = [f"{path.name}: {text!r}" for path in sorted((PACKAGE / "eval").rglob("*.py"))
             for text in _code_words(path) if pattern.search(_without_escapes(text.lower()))]
    assert imports + relative == [], "studio/eval imports the toy world; register a ConceptChecker instead"
    assert words == [], f"toy-world words in the evaluation engine's code: {words}"
