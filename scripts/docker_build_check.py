#!/usr/bin/env python3
"""Builds the Dockerfile without a container engine, so that a file its stages need but do not copy fails CI.

Each stage is laid out in a scratch directory exactly as its instructions say: WORKDIR moves, `COPY` brings
what the build context holds (minus `.dockerignore`), `RUN` runs there. The build stage's cargo commands run for
real, as `cargo check` (the same manifest, build script, sources, lock and `include_str!`s as the release build,
in a fraction of its time); `RUN` lines that install system packages are skipped (they need no file of ours).
A `COPY --from=<stage>` must name what that stage makes: a cargo binary of the manifest, or a file it copied.
Every other `COPY` source must exist in the context.

    python3 scripts/docker_build_check.py [--dockerfile Dockerfile] [--keep]

Exit status 0 when every stage lays out and builds; otherwise the failing instruction and why.
"""

import argparse
import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Kept between runs: the dependencies are checked once, then only aigw itself.
TARGET = ROOT / "target" / "docker-check"


class Failed(Exception):
    pass


def instructions(text):
    """(line number, keyword, argument) per instruction: continuations joined, comments and blanks dropped."""
    out, buf, start = [], "", 0
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue
        if not buf:
            start = n
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        keyword, _, arg = buf.partition(" ")
        out.append((start, keyword.upper(), arg.strip()))
        buf = ""
    return out


def ignored_patterns():
    path = ROOT / ".dockerignore"
    if not path.exists():
        return []
    return [p.strip().strip("/") for p in path.read_text().splitlines()
            if p.strip() and not p.startswith("#")]


def is_ignored(rel, patterns):
    parts = Path(rel).parts
    return any(fnmatch.fnmatch(rel, p) or (parts and fnmatch.fnmatch(parts[0], p)) for p in patterns)


def copy_in(src_rel, dest, patterns, at):
    """Copies context path `src_rel` to `dest` as Docker does: a directory's contents, or the file."""
    src = ROOT / src_rel
    if is_ignored(src_rel, patterns) or not src.exists():
        why = "excluded by .dockerignore" if src.exists() else "not in the build context"
        raise Failed(f"line {at}: COPY {src_rel}: {why}")
    if src.is_dir():
        for path in src.rglob("*"):
            rel = path.relative_to(ROOT).as_posix()
            if path.is_file() and not is_ignored(rel, patterns):
                target = dest / path.relative_to(src)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
    else:
        target = dest / src.name if dest.is_dir() or str(dest).endswith("/") else dest
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


def cargo_bins():
    text = (ROOT / "Cargo.toml").read_text()
    return set(re.findall(r'\[\[bin\]\]\s*name\s*=\s*"([^"]+)"', text))


def as_check(command):
    """The RUN command with cargo builds made checks: same inputs, no code generation."""
    command = re.sub(r"\bcargo build\b", "cargo check", command)
    return command.replace(" --release", "")


def run_stage(stage, root, patterns, made):
    cwd = root
    env = dict(os.environ, CARGO_TARGET_DIR=str(TARGET), CARGO_TERM_COLOR="never")
    for at, keyword, arg in stage["body"]:
        if keyword == "WORKDIR":
            cwd = root / arg.lstrip("/")
            cwd.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            words = shlex.split(arg)
            flags = [w for w in words if w.startswith("--")]
            sources, dest_word = [w for w in words if not w.startswith("--")][:-1], words[-1]
            dest = (root / dest_word.lstrip("/")) if dest_word.startswith("/") else cwd / dest_word
            source_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
            if source_stage is not None:
                for s in sources:
                    check_made(source_stage, s, made, at)
                continue
            if len(sources) > 1 or dest_word.endswith("/"):
                dest.mkdir(parents=True, exist_ok=True)
            for s in sources:
                copy_in(s, dest, patterns, at)
                made.setdefault(stage["name"], set()).add(str(dest / Path(s).name if dest.is_dir() else dest))
        elif keyword == "RUN":
            if arg.startswith("apt-get") or arg.startswith("apk "):
                print(f"  line {at}: skipped (system packages): {arg[:60]}...")
                continue
            command = as_check(arg)
            print(f"  line {at}: {command}")
            done = subprocess.run(["sh", "-ec", command], cwd=cwd, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise Failed(f"line {at}: RUN {arg}\n{done.stdout[-3000:]}{done.stderr[-3000:]}")


def check_made(stage, source, made, at):
    """A file another stage makes: one of the manifest's binaries, or one it copied."""
    match = re.fullmatch(r".*/target/(?:release|debug)/([^/]+)", source)
    if match and match.group(1) in cargo_bins():
        return
    if any(source == p or p.endswith(source) for p in made.get(stage, ())):
        return
    raise Failed(f"line {at}: COPY --from={stage} {source}: stage '{stage}' does not make it")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dockerfile", default=str(ROOT / "Dockerfile"))
    parser.add_argument("--keep", action="store_true", help="keep the scratch directories")
    args = parser.parse_args()
    stages = []
    for at, keyword, arg in instructions(Path(args.dockerfile).read_text()):
        if keyword == "FROM":
            words = arg.split()
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else str(len(stages))
            stages.append({"name": name, "image": words[0], "body": []})
        elif stages:
            stages[-1]["body"].append((at, keyword, arg))
    patterns = ignored_patterns()
    scratch = Path(tempfile.mkdtemp(prefix="aigw-docker-"))
    made = {}
    try:
        for stage in stages:
            print(f"stage {stage['name']} (FROM {stage['image']})")
            run_stage(stage, scratch / stage["name"], patterns, made)
    except Failed as e:
        print(f"{args.dockerfile}: {e}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"{args.dockerfile}: every stage lays out and builds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
