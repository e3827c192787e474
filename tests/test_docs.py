"""The documentation builds strictly, and every Python block in the README and the docs runs as written.

Blocks of one page share a namespace and run in order, in a fresh interpreter per page (as a reader would
paste them into one session). Non-Python snippets use other fences (```bash, ```text).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)


def python_blocks(page: Path) -> list[str]:
    return FENCE.findall(page.read_text(encoding="utf-8"))


def test_python_blocks_are_found():
    # the extraction itself: a page with two blocks gives both, other fences are ignored
    text = "x\n```python\na = 1\n```\n```bash\nls\n```\n```python title=\"t\"\nb = a + 1\n```\n"
    assert FENCE.findall(text) == ["a = 1\n", "b = a + 1\n"]
    assert python_blocks(ROOT / "README.md"), "the README must show runnable Python"


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: str(p.relative_to(ROOT)))
def test_page_python_blocks_run(page: Path, tmp_path: Path):
    script = "\n\n".join(f"# ---- block {i}\n{b}" for i, b in enumerate(python_blocks(page)))
    (tmp_path / "page.py").write_text(script, encoding="utf-8")
    # one intra-op thread: the blocks are tiny, and on a shared machine idle OpenMP threads spin and multiply the
    # CPU time several-fold; a reader's own thread settings are not what these tests check
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **os.environ, "MPLBACKEND": "Agg",
           "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "page.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=420)
    assert res.returncode == 0, f"{page.name}: a Python block failed\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"


def test_docs_build_strict(tmp_path: Path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    if mkdocs is None:  # the dev extra installs it; a missing install step must fail, not skip
        pytest.fail("mkdocs is not installed: `make test` installs it through the dev extra")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    # no -q: it raises the log level above WARNING, so --strict would no longer see (and fail on) warnings
    res = subprocess.run([mkdocs, "build", "--strict", "-d", str(tmp_path / "site")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"mkdocs build --strict failed:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    assert "WARNING" not in res.stderr, res.stderr[-4000:]
    api = (tmp_path / "site" / "api" / "layers" / "index.html").read_text(encoding="utf-8")
    assert "DiscreteLayer" in api, "the API reference must be generated from the docstrings"
    # reStructuredText roles became links (docs/_griffe_rst.py), never literal text
    assert ":class:" not in api and "&lt;autoref" not in api and 'class="autorefs autorefs-internal"' in api
    nav = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    for page in NAV_PAGES:
        assert f'href="{page}/"' in nav or f'href="./{page}/"' in nav, f"{page} is missing from the navigation"
    # every public name has an entry in the API reference (a new public class needs a line in docs/api/*.md)
    ids = set()
    for html in (tmp_path / "site" / "api").rglob("index.html"):
        ids |= {i.rsplit(".", 1)[-1] for i in re.findall(r'id="(discreteopt[\w.]*)"', html.read_text("utf-8"))}
    import discreteopt as do
    from discreteopt import data, stochastic
    missing = [f"{mod.__name__}.{name}" for mod in (do, do.solvers, do.estimators, do.executors, do.noise, do.losses,
                                                    stochastic, data)
               for name in mod.__all__ if name not in ids and name != "__version__"
               and not isinstance(getattr(mod, name), types.ModuleType)]
    assert not missing, f"public names without an API reference entry (add them to docs/api/*.md): {missing}"


# every guide page and API page the docs promise (issue #13), present in mkdocs.yml's nav
NAV_PAGES = ["guide/getting-started", "guide/own-solver", "guide/estimators", "guide/executors", "guide/pto",
             "guide/stochastic", "guide/benchmarks", "api/layers", "api/solvers", "api/estimators", "api/noise",
             "api/losses", "api/cache", "api/executors", "api/stochastic", "api/testing", "api/metrics"]


def _rst():
    """``docs/_griffe_rst.py`` (the griffe extension of mkdocs.yml), imported without leaving bytecode in docs/."""
    sys.path.insert(0, str(ROOT / "docs"))
    write, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        import _griffe_rst
    finally:
        sys.path.pop(0)
        sys.dont_write_bytecode = write
    return _griffe_rst


def test_rst_docstrings_become_markdown():
    griffe = pytest.importorskip("griffe")
    rst = _rst()
    mod = griffe.Module("pkg")
    mod.set_member("mod", sub := griffe.Module("mod", parent=mod))
    text = ("Uses :class:`~discreteopt.solvers.TopK` and :func:`helper`.\n\n"
            "Formula::\n\n    y = argmax <theta, y>\n\nAfter.\n\n"
            "==========  =====\nname        value\n==========  =====\nalpha       1\n"
            "            (cont)\nbeta        2\n==========  =====\n\n"
            ">>> x = f([1] [2])\n\nArgs:\n    source, target: the end points.\n        More.\n    k: size.\n")
    out = rst.convert(text, sub)
    assert '<autoref identifier="discreteopt.solvers.TopK" optional><code>TopK</code></autoref>' in out
    assert 'identifier="pkg.mod.helper"' in out                       # relative names: the docstring's module
    assert "**Formula:**\n\n```text\ny = argmax <theta, y>\n```\n\nAfter." in out
    assert "| name | value |\n|---|---|\n| alpha | 1 (cont) |\n| beta | 2 |" in out
    assert "```python\n>>> x = f([1] [2])\n```" in out                # doctest lines: code, not link syntax
    assert "    source: the end points.\n        More.\n    target: as ``source``.\n    k: size." in out
    literal = rst.convert("Example::\n\n    see :class:`A`\n", sub)
    assert ":class:`A`" in literal and "autoref" not in literal        # literal blocks are left alone
