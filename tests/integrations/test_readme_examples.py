"""The LlamaIndex and LangChain examples of the READMEs run as written, with the hub model
replaced by the offline tiny checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
from chromadb.api.client import SharedSystemClient

from twn_rag.config import DEFAULT_MODEL
from twn_rag.samples import make_sample_image, write_sample_pdf, write_sample_video

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = [
    ("README.md", "LlamaIndex"),
    ("README.md", "LangChain"),
    ("README.md", "Retrieving from a twn-rag index in LlamaIndex and LangChain"),
    ("README.md", "Budget per collection"),
    ("integrations/llama-index-embeddings-twn/README.md", None),
    ("integrations/langchain-twn/README.md", None),
    ("integrations/llama-index-readers-twn/README.md", None),
]


def python_blocks(markdown: str, section: str | None = None) -> list[str]:
    """The fenced ``python`` blocks of ``markdown``; with ``section``, only those under the
    ``## section`` heading (up to the next ``## `` heading)."""
    blocks: list[str] = []
    current: list[str] | None = None
    in_section = section is None
    fence_language = None
    for line in markdown.splitlines():
        if fence_language is None and line.startswith("```"):
            fence_language = line[3:].strip()
            current = [] if fence_language == "python" and in_section else None
        elif fence_language is not None and line.startswith("```"):
            if current is not None:
                blocks.append("\n".join(current) + "\n")
            fence_language, current = None, None
        elif fence_language is not None:
            if current is not None:
                current.append(line)
        elif line.startswith("## ") and section is not None:
            in_section = line[3:].strip() == section
    return blocks


def test_python_blocks_reads_only_the_named_section():
    markdown = "## A\n```python\na = 1\n```\n## B\n```bash\nls\n```\n```python\n# not a heading\nb = 2\n```\n"
    assert python_blocks(markdown, "A") == ["a = 1\n"]
    assert python_blocks(markdown, "B") == ["# not a heading\nb = 2\n"]
    assert python_blocks(markdown) == ["a = 1\n", "# not a heading\nb = 2\n"]


@pytest.fixture
def forget_relative_chroma_clients():
    """The examples open ``PersistentClient(path="./chroma")`` in each test's own folder, and
    chromadb keys its open databases by the path as written: without this, a later example
    would write into the database an earlier one opened in another folder."""
    yield
    from chromadb.api.shared_system_client import SharedSystemClient

    for identifier in [name for name in SharedSystemClient._identifier_to_system if name.startswith(".")]:
        SharedSystemClient._identifier_to_system.pop(identifier).stop()
        SharedSystemClient._identifier_to_refcount.pop(identifier, None)


@pytest.mark.parametrize(("readme", "section"), EXAMPLES)
@pytest.mark.usefixtures("forget_relative_chroma_clients")
def test_readme_example_runs(readme, section, tiny_ckpt, tmp_path, monkeypatch, capsys):
    blocks = python_blocks((REPO / readme).read_text(encoding="utf-8"), section)
    assert blocks, f"no python example in {readme} {section or ''}"
    assert any(f'"{DEFAULT_MODEL}"' in block for block in blocks), "the example should name the released model"
    monkeypatch.chdir(tmp_path)
    make_sample_image((96, 64), seed=5).save("chart.png")
    write_sample_pdf("manual.pdf", 3)
    write_sample_video("clip.mp4", seconds=2.0, fps=4)
    namespace: dict = {"__name__": "__readme__"}
    try:
        for number, block in enumerate(blocks):
            code = block.replace(f'"{DEFAULT_MODEL}"', repr(str(tiny_ckpt)))
            exec(compile(code, f"{readme}:{section or 'example'}:{number}", "exec"), namespace)
    finally:
        # chromadb caches one database per path as written: the examples' relative "./chroma"
        # of one test must not be served from another test's (deleted) directory.
        SharedSystemClient.clear_system_cache()
    assert capsys.readouterr().out.strip(), "the example prints its results"
