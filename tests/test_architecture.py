"""The shape of the code, checked: the layer contracts in pyproject.toml
(import-linter), and the limits a newcomer can rely on (modules under 400
lines, functions under 80 lines and 8 parameters, no private name imported
across modules)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "guiapp"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
MAX_PARAMETERS = 8


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_the_layer_contracts_hold(tmp_path):
    """lint-imports with the contracts of pyproject.toml: the engine's floors
    (run > targets > context > tuning | quantize > job > calibrate | report >
    evaluate > tasks > data > model > base modules), no Qt in the engine, the
    wizard and the command line independent."""
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(exe).exists():
        pytest.fail("lint-imports is missing: install the dev extra (pip install -e '.[dev]')")
    before = sorted(p.name for p in ROOT.iterdir())
    # --no-cache: import-linter would otherwise keep a cache folder in the working directory.
    out = subprocess.run([exe, "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "3 kept, 0 broken" in out.stdout
    assert sorted(p.name for p in ROOT.iterdir()) == before


def test_modules_stay_small():
    big = {str(p.relative_to(ROOT)): n for p in modules() if (n := len(p.read_text().splitlines())) >= MAX_MODULE_LINES}
    assert not big, f"modules of {MAX_MODULE_LINES} lines or more (split them by what they hold): {big}"


def test_functions_stay_short_and_take_few_parameters():
    long, wide = [], []
    for path in modules():
        for f in functions(ast.parse(path.read_text())):
            where = f"{path.relative_to(ROOT)}:{f.lineno} {f.name}"
            lines = f.end_lineno - f.lineno + 1
            if lines > MAX_FUNCTION_LINES:
                long.append(f"{where} ({lines} lines)")
            params = [a.arg for a in (*f.args.posonlyargs, *f.args.args, *f.args.kwonlyargs) if a.arg not in ("self", "cls")]
            if len(params) > MAX_PARAMETERS:
                wide.append(f"{where} ({len(params)} parameters)")
    assert not long, "functions over 80 lines: " + "; ".join(long)
    assert not wide, "functions with more than 8 parameters (pass a context object): " + "; ".join(wide)


def test_no_private_name_crosses_modules():
    crossing = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        crossing.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {alias.name}")
    assert not crossing, "; ".join(crossing)


def test_the_checks_can_fail(tmp_path):
    """The limits above are measured, not assumed: a module built to break
    each one is caught."""
    bad = "def f(a, b, c, d, e, f, g, h, i):\n" + "    x = 1\n" * 90 + "from x import _hidden\n"
    tree = ast.parse(bad)
    f = next(functions(tree))
    assert f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES and len(f.args.args) > MAX_PARAMETERS
    assert any(isinstance(n, ast.ImportFrom) and n.names[0].name == "_hidden" for n in ast.walk(tree))
