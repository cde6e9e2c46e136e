"""Run the ```python blocks of documentation pages (used by test_docs.py).

    python tests/render/doc_blocks.py docs/index.md docs/concepts/graph.md ...

Blocks of one page share a namespace and run in order; a block right after an
`<!-- no-run -->` comment is skipped (it needs a server, a model or your own data).
The default LLM is a scripted stand-in, so no model is started. Exits 1 on the first
failing block of any page, printing the page, the block and the traceback.
"""

from __future__ import annotations

import re
import sys
import traceback
from pathlib import Path

BLOCK = re.compile(r"(<!-- no-run -->\s*)?```python\n(.*?)```", re.S)


def scripted_llm(messages: list[dict], **kwargs: object) -> str:
    """Proposes nothing: the text solver keeps every value."""
    return '{"reasoning": "documentation test", "suggestion": {}}'


def blocks(page: Path) -> list[str]:
    return [code for skip, code in BLOCK.findall(page.read_text(encoding="utf-8")) if not skip]


def run_page(page: Path) -> int:
    namespace: dict = {"__name__": "__docs__"}
    for i, code in enumerate(blocks(page)):
        try:
            exec(compile(code, f"{page}#block{i}", "exec"), namespace)
        except Exception:
            print(f"FAILED: {page}, python block {i}:\n{code}", file=sys.stderr)
            traceback.print_exc()
            return 1
    return 0


def main(pages: list[str]) -> int:
    import tracekit as tk

    tk.llm.set_default(scripted_llm)
    failures = sum(run_page(Path(p)) for p in pages)
    print(f"ran {len(pages)} pages, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
