"""The layers, read from the source with ``ast``: face (pipeline/) over three stages side by side, over the
shared contracts (stages/shared/) and the store (cache/). No stage imports a sibling stage, the cache imports
no stage, the shared contracts import no stage and nothing heavy, and the code base has one slug function."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "stages", "cache")
STAGES = ("extract", "fit", "report")


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path) -> list[str]:
    """Every module ``path`` imports, anywhere in the file (function-level imports too), made absolute."""
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return found


def _layer(module: str) -> str:
    """pipeline.commands.<cmd> | pipeline | stages.<stage> | stages.shared | cache | other."""
    parts = module.split(".")
    if module == "stages":
        return "other"  # the bare namespace package: empty
    if parts[0] == "pipeline":
        return f"pipeline.commands.{parts[2]}" if len(parts) > 2 and parts[1] == "commands" else "pipeline"
    if parts[0] == "stages" and len(parts) > 1:
        return f"stages.{parts[1]}"
    return parts[0] if parts[0] in PACKAGES else "other"


def allowed(importer: str, imported: str) -> bool:
    """The layer rules: who may import whom."""
    src, dst = _layer(importer), _layer(imported)
    if dst == "other" or src == dst:
        return True
    if src == "stages.shared":
        return False  # the contracts import no stage, no cache and no CLI
    if src == "cache":
        return imported.startswith("stages.shared.errors")  # only the user-error base
    if src.startswith("stages."):
        return dst in ("stages.shared", "cache")  # never a sibling stage, never the CLI
    if src.startswith("pipeline.commands."):
        return not dst.startswith("pipeline.commands.")  # a command never reaches into a sibling command
    return True


def violations(root: Path) -> list[str]:
    """``importer -> imported`` for every import that breaks a layer rule under ``root``."""
    bad = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            importer = _module_name(path, root)
            for imported in imports_of(path, root):
                if _layer(imported) != "other" and not allowed(importer, imported):
                    bad.append(f"{importer} -> {imported}")
    return bad


def test_no_layer_is_crossed() -> None:
    assert violations(ROOT) == []


def test_the_check_catches_each_kind_of_crossing(tmp_path: Path) -> None:
    files = {
        "stages/fit/a.py": "from stages.extract.run import extract\n",      # a sibling stage
        "stages/report/b.py": "def f():\n    import stages.fit.run\n",        # inside a function
        "cache/c.py": "from stages.fit.source import ArraySource\n",         # the store reaching up
        "stages/shared/d.py": "from cache import FeatureCache\n",            # the contracts reaching out
        "stages/shared/h.py": "import cache.key\n",                          # plain import form
        "stages/extract/e.py": "from pipeline.options import open_cache\n",  # a stage reaching the CLI
        "pipeline/commands/f.py": "from pipeline.commands.g import x\n",     # a sibling command
        "stages/fit/ok.py": ("from stages.shared.record import RunRecord\nfrom cache import FeatureCache\n"
                             "from . import a\n"),
        "cache/ok.py": "from stages.shared.errors import UserError\nimport numpy\n",
        "pipeline/commands/g.py": "from pipeline.options import open_cache\nfrom stages.fit.run import fit_runs\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert sorted(violations(tmp_path)) == sorted([
        "stages.fit.a -> stages.extract.run", "stages.fit.a -> stages.extract.run.extract",
        "stages.report.b -> stages.fit.run",
        "cache.c -> stages.fit.source", "cache.c -> stages.fit.source.ArraySource",
        "stages.shared.d -> cache", "stages.shared.d -> cache.FeatureCache", "stages.shared.h -> cache.key",
        "stages.extract.e -> pipeline.options", "stages.extract.e -> pipeline.options.open_cache",
        "pipeline.commands.f -> pipeline.commands.g", "pipeline.commands.f -> pipeline.commands.g.x",
    ])


def test_shared_contracts_and_the_error_base_load_nothing_heavy() -> None:
    """The CLI names a cache file and every layer raises user errors without loading torch, open_clip or h5py."""
    code = ("import sys; import stages.shared.errors, stages.shared.naming, stages.shared.record, "
            "stages.shared.sampling, pipeline.options, pipeline.hints; "
            "print(sorted(m for m in ('torch', 'open_clip', 'h5py') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_one_slug_function_in_the_code_base() -> None:
    """Exactly one function turns text into a file-name-safe name: stages.shared.naming.slug.

    (Normalising a backbone name for comparison, or a LaTeX label from an already-safe table name, is not one.)
    """
    slugs = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    source = ast.get_source_segment(path.read_text(encoding="utf-8"), node) or ""
                    named = "slug" in node.name.lower() or node.name.strip("_") in ("safe", "sanitize", "safe_name")
                    # what the three old slugs did: unsafe characters of a name -> '_' (by regex or isalnum)
                    cleans = re.search(r"""re\.sub\(r?["']\[\^A-Za-z0-9[^"']*["'],\s*["']_["']""", source) or (
                        "isalnum()" in source and '"_"' in source)
                    if named or cleans:
                        slugs.append(f"{_module_name(path, ROOT)}.{node.name}")
    assert slugs == ["stages.shared.naming.slug"]


def test_cache_messages_speak_of_the_cache_not_of_cli_options() -> None:
    """Every message the cache raises names no command or option: the CLI adds those (pipeline/hints.py)."""
    offending = []
    for path in sorted((ROOT / "cache").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and node.exc is not None:
                for part in ast.walk(node.exc):
                    if isinstance(part, ast.Constant) and isinstance(part.value, str) and (
                            re.search(r"(^|\s)--[a-z]", part.value) or "pipeline " in part.value):
                        offending.append(f"{path.name}:{node.lineno}: {part.value}")
    assert offending == []
