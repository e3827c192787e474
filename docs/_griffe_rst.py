"""Griffe extension for the API reference: the library's docstrings use a few reStructuredText constructs
(``:class:`~pkg.Name``` roles, ``text::`` before a literal block) that Markdown would print verbatim.

Before a docstring is parsed, outside literal blocks and doctest lines:

* ``:class:`X```, ``:func:``, ``:meth:``, ``:mod:``, ``:attr:``, ``:data:``, ``:exc:``, ``:obj:`` become an
  *optional* cross-reference (``<autoref optional>``): a link when ``X`` is rendered somewhere in the reference,
  plain code otherwise (never a warning). ``~pkg.mod.Name`` shows ``Name``; a name without a package is looked
  up in the docstring's module (and its class, for methods);
* a paragraph ending in ``::`` ends in ``:`` and the literal block after it becomes a fenced code block at the
  paragraph's indentation (so it also works inside list items); a line that is only ``Example::`` becomes bold
  text, so the Google parser does not take it for a section;
* an RST simple table (``====  ====`` borders) becomes a Markdown table;
* a doctest paragraph (``>>>`` lines) in the running text becomes a Python code block (inside a Google
  ``Examples:`` section griffe renders it already);
* an ``Args:`` entry naming several parameters (``source, target: ...``, a convention of this code base) becomes
  one entry per parameter, the later ones pointing to the first.

Used by ``mkdocs.yml`` (``extensions: [docs/_griffe_rst.py]``); nothing here changes the library.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`(~?)([^`<>]+?)`")
LONE_TITLE = re.compile(r"^(\s*)([A-Z][A-Za-z ]*)::\s*$")
ARGS_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Keyword Args|Keyword Arguments|Other Parameters):\s*$")
MULTI_PARAM = re.compile(r"^(\s+)([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)+)(\s*\([^)]*\))?:(\s.*|)$")


def split_multi_params(text: str) -> str:
    """``a, b: text`` entries of Args sections -> ``a: text`` (with its continuation lines), ``b: as `a`.``"""
    lines = text.split("\n")
    out: list[str] = []
    in_args, i = False, 0
    while i < len(lines):
        line = lines[i]
        if ARGS_SECTION.match(line):
            in_args, args_indent = True, len(line) - len(line.lstrip())
            out.append(line)
            i += 1
            continue
        indent = len(line) - len(line.lstrip())
        if in_args and line.strip() and indent <= args_indent:
            in_args = False
        m = MULTI_PARAM.match(line) if in_args else None
        if m is None:
            out.append(line)
            i += 1
            continue
        names = [n.strip() for n in m.group(2).split(",")]
        out.append(f"{m.group(1)}{names[0]}{m.group(3) or ''}:{m.group(4)}")
        i += 1
        while i < len(lines) and lines[i].strip() and len(lines[i]) - len(lines[i].lstrip()) > indent:
            out.append(lines[i])  # continuation lines of the first entry
            i += 1
        out.extend(f"{m.group(1)}{n}{m.group(3) or ''}: as ``{names[0]}``." for n in names[1:])
    return "\n".join(out)


def _identifiers(target: str, obj: griffe.Object) -> tuple[str, str | None]:
    """The identifier to link to and a second candidate (autorefs tries both)."""
    target = target.strip().lstrip(".").rstrip("()")
    if target.startswith("discreteopt") or target.startswith("torch"):
        return target, None
    module = obj if obj.is_module else obj.module
    owner = obj if obj.is_class else obj.parent if obj.parent is not None and obj.parent.is_class else None
    first = f"{module.path}.{target}"
    second = f"{owner.path}.{target}" if owner is not None else f"{module.path.rsplit('.', 1)[0]}.{target}"
    return first, second


def _title(match: re.Match) -> str:
    tilde, target = match.group(1), match.group(2).strip()
    return target.rsplit(".", 1)[-1] if tilde else target.lstrip(".")


def _role(match: re.Match, obj: griffe.Object) -> str:
    target, title = match.group(2).strip(), _title(match)
    ident, slug = _identifiers(target, obj)
    slug_attr = f' slug="{slug}"' if slug else ""
    return f'<autoref identifier="{ident}"{slug_attr} optional><code>{title}</code></autoref>'


BORDER = re.compile(r"^(\s*)=+(?: +=+)+\s*$")


def _table(lines: list[str]) -> list[str]:
    """An RST simple table (``===  ===`` borders, header, rows; continuation rows start with blank cells) as a
    Markdown table."""
    border = lines[0]
    indent = len(border) - len(border.lstrip())
    starts = [m.start() for m in re.finditer(r"=+", border)]
    rows: list[list[str]] = []
    for line in lines[1:]:
        if BORDER.match(line) or not line.strip():
            continue
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        if rows and not cells[0] and len(rows) > 1:
            rows[-1] = [f"{old} {new}".strip() for old, new in zip(rows[-1], cells, strict=True)]
        else:
            rows.append(cells)
    pad = " " * indent
    out = [f"{pad}| " + " | ".join(rows[0]) + " |", f"{pad}|" + "---|" * len(starts)]
    out += [f"{pad}| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows[1:]]
    return ["", *out, ""]


def convert(text: str, obj: griffe.Object) -> str:
    """The docstring ``text`` with the constructs above rewritten."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        indent = len(line) - len(line.lstrip())
        if BORDER.match(line):  # an RST simple table: up to its third border
            j, borders = i, 0
            while j < len(lines) and borders < 3:
                borders += bool(BORDER.match(lines[j]))
                j += 1
            out.extend(_table(lines[i:j]))
            i = j
            continue
        if line.lstrip().startswith(">>>"):
            if indent:  # inside a Google "Examples:" section: griffe renders it
                out.append(line)
                i += 1
                continue
            j = i  # a doctest paragraph in the running text: a Python code block up to the next blank line
            while j < len(lines) and lines[j].strip():
                j += 1
            out += ["", "```python", *lines[i:j], "```"]
            i = j
            continue
        # a line indented 4+ spaces is a Markdown code block after a blank line: plain code there, no HTML
        new = ROLE.sub(lambda m, code=indent >= 4: f"`{_title(m)}`" if code else _role(m, obj), line)
        i += 1
        if not new.rstrip().endswith("::"):
            out.append(new)
            continue
        lone = LONE_TITLE.match(new)
        out.append(f"{lone.group(1)}**{lone.group(2)}:**" if lone else new.rstrip()[:-1])
        block: list[str] = []  # the literal block: blank lines or lines indented deeper than the paragraph
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
            block.append(lines[i])
            i += 1
        while block and not block[-1].strip():
            i -= 1  # give trailing blank lines back
            block.pop()
        while block and not block[0].strip():
            block.pop(0)  # leading blank lines
        if not block:
            continue
        cut = min(len(b) - len(b.lstrip()) for b in block if b.strip())
        pad = " " * indent
        code = (lone and re.search(r"Example|Usage", lone.group(2))) or block[0].lstrip().startswith(">>>")
        out += ["", f"{pad}```{'python' if code else 'text'}",
                *[pad + b[cut:] if b.strip() else "" for b in block], f"{pad}```"]
    return split_multi_params("\n".join(out))


class RstToMarkdown(griffe.Extension):
    """Rewrite reStructuredText roles and ``::`` in docstrings before they are parsed."""

    def on_instance(self, *, node: Any, obj: griffe.Object, agent: Any, **kwargs: Any) -> None:
        if obj.docstring is not None and obj.docstring.value:
            obj.docstring.value = convert(obj.docstring.value, obj)
