"""The layer rule (pyproject.toml, [tool.importlinter]): imports run cli -> training and
tools -> inference -> core, and a training run does not load the evaluation report.

`lint-imports` passes on the tree as it is and fails on a copy with one import turned
the wrong way, so the contract is known to bite.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports() -> str:
    """The `lint-imports` beside this interpreter, else on PATH; skip where neither is."""
    beside = Path(sys.executable).parent / "lint-imports"
    found = str(beside) if beside.is_file() else shutil.which("lint-imports")
    if found is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    return found


def _run(cwd: Path) -> subprocess.CompletedProcess:
    """lint-imports over the `audiodiff` package in `cwd` (it puts `cwd` first on sys.path)."""
    return subprocess.run([_lint_imports(), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_tree_keeps_the_layer_rule():
    result = _run(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("module, inverted", [
    ("recipe.py", "import audiodiff.cli"),                           # core reaching up to the CLI
    ("training/logging_tb.py", "import audiodiff.evaluation.report"),  # training loading the report
    ("training/step.py", "import audiodiff.cli"),                     # a piece of the trainer reaching up
])
def test_an_inverted_import_breaks_the_contract(tmp_path, module, inverted):
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copytree(ROOT / "audiodiff", tmp_path / "audiodiff",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pt", "*.flac"))
    target = tmp_path / "audiodiff" / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{inverted}  # noqa: inverted on purpose\n",
                      encoding="utf-8")
    result = _run(tmp_path)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout
    assert f"audiodiff.{module.removesuffix('.py').replace('/', '.')}" in result.stdout
