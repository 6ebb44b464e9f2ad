"""BENCHMARKS.md keeps its figures honest: every section with a table of figures names the raw output it came
from under bench/results/, and every raw output it names is in the repository. (A figure whose raw output was
not kept is removed, not quoted.)"""

import glob
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CITED = re.compile(r"bench/results/[A-Za-z0-9_.{},*/-]+")
# Sections that describe tools or commands, not measurements.
NOT_MEASURED = {"Benchmarks", "The tools", "Reproducing"}


def sections(text):
    """(heading, text) for every ## and ### section; a ### section's text includes its ## parent's lead-in."""
    out, parent_lead, heading, lines = [], "", "Benchmarks", []
    for line in text.splitlines() + ["## end"]:
        match = re.match(r"(#{1,3}) (.*)", line)
        if not match:
            lines.append(line)
            continue
        body = "\n".join(lines)
        out.append((heading, parent_lead + body))
        if match.group(1) == "##":
            parent_lead = ""
        elif match.group(1) == "###" and heading_level == "##":
            parent_lead = body + "\n"
        heading, lines = match.group(2), []
        heading_level = match.group(1)
    return out


def expand(cited):
    """The files a cited path stands for: `{a,b}` alternatives and `*` globs; a folder stands for its files."""
    cited = cited.rstrip(".`),")
    match = re.search(r"\{([^}]*)\}", cited)
    paths = [cited[:match.start()] + alt + cited[match.end():] for alt in match.group(1).split(",")] if match \
        else [cited]
    found = []
    for path in paths:
        # A path without a suffix is an output prefix (as `bench/plot.py` takes it): some file must start with it.
        pattern = path if "*" in path or Path(path).suffix else path + "*"
        found += glob.glob(str(ROOT / pattern))[:1]
    return paths, found


def test_every_table_of_figures_names_its_raw_output():
    text = (ROOT / "BENCHMARKS.md").read_text()
    unbacked = []
    for heading, body in sections(text):
        if heading in NOT_MEASURED:
            continue
        lines = body.splitlines()
        rule = re.compile(r"\|[-:| ]+\|$")
        # A table's rows below its header and rule, with a digit in them.
        figures = [l for i, l in enumerate(lines) if l.startswith("|") and re.search(r"\d", l)
                   and not rule.match(l) and not (i + 1 < len(lines) and rule.match(lines[i + 1]))]
        if figures and not CITED.search(body):
            unbacked.append(f"{heading}: {figures[0]}")
    assert not unbacked, "tables of figures with no raw output named:\n" + "\n".join(unbacked)


def test_every_raw_output_named_is_in_the_repository():
    text = (ROOT / "BENCHMARKS.md").read_text()
    cited = CITED.findall(text)
    assert len(cited) >= 10, cited
    missing = []
    for path in cited:
        paths, found = expand(path)
        if len(found) < len(paths):
            missing.append(path)
    assert not missing, missing


def test_todays_figures_each_name_a_date_a_command_and_raw_output():
    """The opening table: one row a figure, each with its date, its command and a raw output that exists."""
    text = (ROOT / "BENCHMARKS.md").read_text()
    body = text.split("\n## Today's figures\n", 1)[1].split("\n## ", 1)[0]
    rows = [l for l in body.splitlines() if l.startswith("|") and not re.match(r"\|[-:| ]+\|$", l)][1:]
    assert len(rows) >= 10, rows
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        what, figure, date, command, raw = cells
        assert re.search(r"\d", figure), row
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", date), row
        assert command.startswith("`") and ("bench/" in command or "aigw" in command
                                            or command.startswith("`cargo bench --bench ")), row
        cited = CITED.findall(raw)
        assert cited and all(len(expand(c)[1]) == len(expand(c)[0]) for c in cited), row
        assert date in raw, f"the raw output is not the date's: {row}"
