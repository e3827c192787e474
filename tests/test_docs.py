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
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "page.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=420)
    assert res.returncode == 0, f"{page.name}: a Python block failed\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"


def test_docs_build_strict(tmp_path: Path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    if mkdocs is None:  # the dev extra installs it; a missing install step must fail, not skip
        pytest.fail("mkdocs is not installed: `make test` installs it through the dev extra")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    res = subprocess.run([mkdocs, "build", "--strict", "-q", "-d", str(tmp_path / "site")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"mkdocs build --strict failed:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    api = (tmp_path / "site" / "api" / "layers" / "index.html").read_text(encoding="utf-8")
    assert "DiscreteLayer" in api, "the API reference must be generated from the docstrings"
