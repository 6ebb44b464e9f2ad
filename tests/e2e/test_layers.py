"""scripts/layers.py, the gate that keeps the layers: run on a copy of the tree, it passes as the tree is, and fails
naming the file on each thing it promises to refuse: an import of a higher layer, two files that import each
other, a file over the line limit, lib.rs's table out of step with docs/architecture.md's."""
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def tree(tmp_path):
    """A copy of what layers.py reads: src/, docs/architecture.md and the script itself."""
    shutil.copytree(ROOT / "src", tmp_path / "src")
    (tmp_path / "docs").mkdir()
    shutil.copy(ROOT / "docs" / "architecture.md", tmp_path / "docs")
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "layers.py", tmp_path / "scripts")
    return tmp_path


def run(root):
    done = subprocess.run([sys.executable, str(root / "scripts" / "layers.py")], capture_output=True, text=True,
                          timeout=60)
    return done.returncode, done.stdout


def test_the_tree_as_it_is_passes(tmp_path):
    assert run(tree(tmp_path)) == (0, "")


def test_an_import_of_a_higher_layer_fails(tmp_path):
    root = tree(tmp_path)
    low = root / "src" / "upstream" / "sse.rs"
    low.write_text("use crate::call::start::Start;\n" + low.read_text())
    code, out = run(root)
    assert code == 1
    assert "src/upstream/sse.rs imports src/call/start.rs: layer call is not below upstream" in out, out


def test_two_files_that_import_each_other_fail(tmp_path):
    root = tree(tmp_path)
    a, b = root / "src" / "upstream" / "sse.rs", root / "src" / "upstream" / "retry_after.rs"
    a.write_text("use super::retry_after;\n" + a.read_text())
    b.write_text("use super::sse;\n" + b.read_text())
    code, out = run(root)
    assert code == 1
    assert "files import each other:" in out and "src/upstream/sse.rs" in out, out


def test_a_file_over_the_line_limit_fails(tmp_path):
    root = tree(tmp_path)
    path = root / "src" / "upstream" / "sse.rs"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines + ["// padding"] * (601 - len(lines))) + "\n")
    code, out = run(root)
    assert code == 1
    assert "src/upstream/sse.rs: 601 lines, over 600" in out, out
    # 600 is allowed.
    path.write_text("\n".join(lines + ["// padding"] * (600 - len(lines))) + "\n")
    assert run(root) == (0, "")


def test_lib_rs_out_of_step_with_the_architecture_table_fails(tmp_path):
    root = tree(tmp_path)
    lib = root / "src" / "lib.rs"
    text = lib.read_text()
    row = next(line for line in text.splitlines() if line.startswith("//! | call |"))
    lib.write_text(text.replace(row + "\n", ""))
    code, out = run(root)
    assert code == 1
    assert "src/lib.rs's layer table" in out, out
