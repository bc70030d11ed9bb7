"""Vendor the intersphinx inventories of the projects the documentation links to.

Run once on a machine with internet access::

    python docs/scripts/fetch_intersphinx.py

It writes ``docs/_intersphinx/<name>.inv`` for every project of ``_INTERSPHINX_URLS`` in
``docs/conf.py``; committed, they let offline builds (CI) resolve references to
scikit-learn, PyTorch, NumPy, skorch and the others. Without them the build links to
those projects only when ``ENSEMBLEKIT_DOCS_ONLINE=1``.
"""

from __future__ import annotations

import ast
import urllib.request
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]


def intersphinx_urls() -> dict[str, str]:
    for node in ast.parse((DOCS / "conf.py").read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "_INTERSPHINX_URLS" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise LookupError("_INTERSPHINX_URLS is not set in docs/conf.py")


def main() -> None:
    folder = DOCS / "_intersphinx"
    folder.mkdir(exist_ok=True)
    for name, url in intersphinx_urls().items():
        target = folder / f"{name}.inv"
        with urllib.request.urlopen(f"{url}/objects.inv", timeout=30) as response:
            target.write_bytes(response.read())
        print(f"wrote {target} ({target.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
