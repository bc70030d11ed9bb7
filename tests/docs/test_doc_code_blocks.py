"""Every Python code block of the README and of docs/*.md runs as written.

The blocks of one page run in order in one namespace, as a reader would paste them.
A block that needs data that is not bundled (CIFAR-10) or a long training run is
marked with an HTML comment on the line before it, which neither GitHub nor the
documentation shows::

    <!-- doctest: skip (needs CIFAR-10) -->
    ```python
    ...
    ```

Later blocks of the page must not depend on a marked block (mark them too).
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Pages whose blocks train several ensembles (a few seconds each on two cores).
SLOW_PAGES = {"README.md", "landscape.md", "metrics.md", "posteriors.md", "user_guide.md"}

FENCE = re.compile(
    r"(?P<marker><!--\s*doctest:\s*skip\s*(?P<reason>[^>]*?)\s*-->\s*\n)?"
    r"^```python[^\n]*\n(?P<code>.*?)^```",
    re.DOTALL | re.MULTILINE,
)


def code_blocks(text: str) -> list[tuple[int, str, str | None]]:
    """(line number, code, skip reason or None) of each ```python block."""
    blocks = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start("code"))
        reason = match.group("reason") if match.group("marker") else None
        blocks.append((line, match.group("code"), reason))
    return blocks


def test_code_blocks_finds_blocks_and_skip_markers():
    text = (
        "intro\n\n```python\nx = 1\n```\n\n```bash\nls\n```\n\n"
        "<!-- doctest: skip (needs CIFAR-10) -->\n```python\nload_cifar10()\n```\n"
    )
    assert code_blocks(text) == [
        (3, "x = 1\n", None),
        (12, "load_cifar10()\n", "(needs CIFAR-10)"),
    ]


@pytest.mark.parametrize("page", [
    pytest.param(page, id=page.name,
                 marks=[pytest.mark.slow] if page.name in SLOW_PAGES else [])
    for page in PAGES
])
def test_page_code_blocks_run(page, tmp_path, monkeypatch):
    blocks = code_blocks(page.read_text(encoding="utf-8"))
    if not blocks:
        pytest.skip(f"{page.name} has no python code block")
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)  # blocks that write files write them here
    namespace: dict = {"__name__": "__doc_block__"}
    skipped = []
    for line, code, reason in blocks:
        if reason is not None:
            skipped.append(f"line {line}: {reason}")
            continue
        exec(compile(code, f"{page.name}:{line}", "exec"), namespace)
    if len(skipped) == len(blocks):
        pytest.skip(f"{page.name}: every block is marked: " + "; ".join(skipped))
