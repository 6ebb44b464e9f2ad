"""Every file or folder of the repository that the docs name by its path exists: a path that moved is caught here,
not by a reader."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_paths_the_docs_name_exist():
    missing = []
    for doc in DOCS:
        for path in re.findall(r"`((?:src|tests|scripts|bench|docs|proto|examples)/[\w./-]*[\w/])`", doc.read_text()):
            # A glob or a placeholder is not a path.
            if any(c in path for c in "*{<"):
                continue
            if not (ROOT / path).exists():
                missing.append(f"{doc.relative_to(ROOT)}: {path}")
    assert not missing, "\n".join(missing)
