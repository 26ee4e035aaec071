"""The documentation holds together: every relative link resolves, the README install mirrors CI.

Links are checked in README.md and every markdown file under docs/: inline links and images
(``[text](target)``, ``![alt](target)``) and reference definitions (``[id]: target``), outside
code blocks and code spans.  A relative target must name an existing file or folder; a
``#fragment`` on a markdown target (or alone, for the same file) must name a heading there,
slugged as GitHub does.  URLs with a scheme (https:, mailto:) are not fetched.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]

_FENCE = re.compile(r"^(```|~~~)")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
_INLINE = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def _prose_lines(text: str, keep_code_spans: bool = False) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks, numbered from 1 (code spans removed unless kept)."""
    out, fence = [], None
    for number, line in enumerate(text.splitlines(), start=1):
        match = _FENCE.match(line.lstrip())
        if match:
            if fence is None:
                fence = match.group(1)
            elif match.group(1) == fence:
                fence = None
            continue
        if fence is None:
            out.append((number, line if keep_code_spans else _CODE_SPAN.sub("", line)))
    return out


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: link text kept, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading anchor of a markdown text (repeated headings get -1, -2, ...)."""
    seen: dict[str, int] = {}
    out = set()
    for _, line in _prose_lines(text, keep_code_spans=True):
        match = _HEADING.match(line)
        if not match:
            continue
        slug = _slug(match.group(2))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def broken_links(path: Path) -> list[str]:
    """``'FILE:LINE: target (why)'`` for every relative link in ``path`` that does not resolve."""
    text = path.read_text(encoding="utf-8")
    problems = []
    for number, line in _prose_lines(text):
        targets = [m.group(1) for m in _INLINE.finditer(line)]
        ref = _REFERENCE.match(line)
        if ref:
            targets.append(ref.group(1))
        for target in targets:
            if _SCHEME.match(target):
                continue
            where, _, fragment = target.partition("#")
            dest = (path.parent / unquote(where)).resolve() if where else path
            name = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{number}"
            if not dest.exists():
                problems.append(f"{name}: {target} (no such file)")
            elif fragment and dest.suffix == ".md" and dest.is_file():
                dest_text = dest.read_text(encoding="utf-8") if dest != path else text
                if unquote(fragment).lower() not in anchors(dest_text):
                    problems.append(f"{name}: {target} (no heading #{fragment})")
    return problems


def markdown_files() -> list[Path]:
    """README.md and every markdown page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_every_relative_link_resolves() -> None:
    files = markdown_files()
    assert len(files) > 1, "no docs pages found"
    problems = [p for f in files for p in broken_links(f)]
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_the_link_check_reports_broken_links(tmp_path: Path) -> None:
    # negative control: the same check on a page with known broken and good links
    (tmp_path / "other.md").write_text("# Other page\n\n## A `code` heading (x)\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n"
        "[good](other.md) [good anchor](other.md#a-code-heading-x) [self](#title)\n"
        "![missing image](figures/none.png) [bad anchor](other.md#nowhere)\n"
        "[web](https://example.org/missing) `[in code](missing.md)`\n"
        "```\n[in a block](missing.md)\n```\n"
        "[ref]: gone.md\n"
    )
    problems = broken_links(page)
    assert len(problems) == 3, problems
    assert "figures/none.png (no such file)" in problems[0]
    assert "other.md#nowhere (no heading #nowhere)" in problems[1]
    assert "gone.md (no such file)" in problems[2]


def install_mismatch(readme: str, ci_script: str) -> str | None:
    """Why the README's install does not contain CI's install block verbatim (None: it does).

    The block is the lines of ``.ci/run`` between ``# --- README install`` and ``# ---``; the
    README's first ``bash`` code block must contain them, byte for byte.
    """
    match = re.search(r"^# --- README install[^\n]*\n(.*?)^# ---\s*$", ci_script, re.M | re.S)
    if not match or not match.group(1).strip():
        return "no README install block in .ci/run"
    block = match.group(1).strip()
    first = re.search(r"^```bash\n(.*?)^```", readme, re.M | re.S)
    if not first:
        return "no bash code block in README.md"
    if block not in first.group(1):
        return f"README.md's first bash block does not contain CI's install {block!r}"
    return None


def test_readme_install_is_the_one_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert install_mismatch(readme, ci) is None, install_mismatch(readme, ci)
    # negative control: a README whose install drifted from CI's is caught
    drifted = readme.replace("torch==2.13.0", "torch==2.12.0", 1)
    assert install_mismatch(drifted, ci) is not None
