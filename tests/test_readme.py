#!/usr/bin/env python3
"""The README as a test: every ```sh block of README.md is run (in a scratch copy of the sources,
with a fresh home) or listed in tests/readme-blocks.txt with the reason it is not; the transcript
of "What a run produces" is compared with a real run; and a run with examples/config.json, as the
README describes it, leaves `git status` of a copied tree clean.
Usage: test_readme.py HSMENROLL_BINARY SOURCE_DIR"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

BIN, SRC = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
BLOCK_TIMEOUT = 60  # seconds per block; the whole test stays well under two minutes
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg, file=sys.stderr)


def sh_blocks(readme):
    """[(line number, [lines])] of the ```sh blocks."""
    blocks, current, start = [], None, 0
    for n, line in enumerate(open(readme, encoding="utf-8"), 1):
        line = line.rstrip("\n")
        if current is None and line.strip() == "```sh":
            current, start = [], n
        elif current is not None and line.strip() == "```":
            blocks.append((start, current))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def read_list(path):
    """{first line: (kind, why)}"""
    entries, last = {}, None
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        m = re.match(r"^(run|transcript|skip): (.*)$", line)
        if m:
            last = m.group(2)
            entries[last] = [m.group(1), None]
        elif line.startswith("    why: ") and last is not None:
            entries[last][1] = line[9:].strip()
    for first, (kind, why) in entries.items():
        if kind == "skip" and not why:
            fail("readme-blocks.txt: skip without a why: " + first)
    return entries


def scratch(root, name):
    """A copy of the sources (no build, no .git) with build/hsmenroll this build's binary, a
    no-op scripts/setup.sh, a fresh HOME, a scratch SoftHSM token directory, and an environment
    for it."""
    base = os.path.join(root, name)
    tree = os.path.join(base, "src")
    ignore = shutil.ignore_patterns(".git", "build*", "out*", "*.o")
    shutil.copytree(SRC, tree, ignore=ignore, symlinks=True)
    os.makedirs(os.path.join(tree, "build"))
    os.symlink(BIN, os.path.join(tree, "build", "hsmenroll"))
    with open(os.path.join(tree, "scripts", "setup.sh"), "w") as f:
        f.write("#!/bin/sh\n# no-op in test_readme: the packages and the build are there\n")
    os.chmod(os.path.join(tree, "scripts", "setup.sh"), 0o755)
    bindir = os.path.join(base, "bin")
    os.makedirs(bindir)
    os.symlink(BIN, os.path.join(bindir, "hsmenroll"))
    home = os.path.join(base, "home")
    os.makedirs(home)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HSMENROLL_") and k not in ("XDG_DATA_HOME", "SOFTHSM2_CONF")}
    env.update(HOME=home, PATH=bindir + ":" + os.environ.get("PATH", "/usr/bin:/bin"))
    # A configuration that names no home for its tokens (the shard examples) uses SoftHSM's own
    # configuration: here a scratch one, never the machine's token directory.
    tokens = os.path.join(base, "softhsm-tokens")
    os.makedirs(tokens)
    conf = os.path.join(base, "softhsm2.conf")
    with open(conf, "w") as f:
        f.write("directories.tokendir = %s\nobjectstore.backend = file\n" % tokens)
    env["SOFTHSM2_CONF"] = conf
    return base, tree, env


def localize(text, base):
    """Fixed machine-wide paths of the README made the scratch directory's own."""
    return text.replace("/dev/shm/hsmenroll", os.path.join(base, "shm", "hsmenroll"))


def run_block(root, n, lines, name):
    base, tree, env = scratch(root, name)
    os.makedirs(os.path.join(base, "shm"), exist_ok=True)
    script = localize("\n".join(lines), base) + "\n"
    try:
        p = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=tree, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=BLOCK_TIMEOUT)
    except subprocess.TimeoutExpired:
        fail("README line %d: the block ran over %d s" % (n, BLOCK_TIMEOUT))
        return
    if p.returncode != 0:
        fail("README line %d: the block exited %d:\n%s" % (n, p.returncode, p.stdout[-2000:]))


def normalize(line, home):
    line = re.sub(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ", "", line)
    line = line.replace(home, "/home/op")
    line = re.sub(r"\(serial [^)]*\)", "(serial S)", line)
    line = re.sub(r"\d+(\.\d+)?", "N", line)
    return line.rstrip()


def run_transcript(root, n, lines):
    base, tree, env = scratch(root, "transcript")
    steps = []  # (command, [expected lines])
    for line in lines:
        line = line.strip() if line.strip().startswith("$ ") else line
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
    if not steps:
        fail("README line %d: a transcript without a $ line" % n)
    for command, expected in steps:
        p = subprocess.run(["bash", "-c", command], cwd=tree, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=BLOCK_TIMEOUT)
        got = [normalize(x, env["HOME"]) for x in p.stdout.splitlines()]
        want = [normalize(x, env["HOME"]) for x in expected]
        if any("..." in x for x in want):
            words = set(" ".join(got).split())
            missing = [w for x in want for w in x.split() if w != "..." and w not in words]
            if missing:
                fail("README line %d: `%s` printed no %s" % (n, command, ", ".join(missing)))
        elif got != want:
            fail("README line %d: `%s` prints what the README does not show:\n"
                 "README:\n  %s\nreal run:\n  %s" % (n, command, "\n  ".join(want),
                                                      "\n  ".join(got)))


def check_config_example(root):
    """The README's way with examples/config.json (token init, ca init, run with --config) writes
    nothing into the sources: `git status` of a copied tree stays clean."""
    if shutil.which("git") is None:
        fail("git is not installed")
        return
    base, tree, env = scratch(root, "config")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid"]
    subprocess.run(git + ["init", "-q"], cwd=tree, check=True)
    with open(os.path.join(tree, ".git", "info", "exclude"), "a") as f:
        f.write("/build/\n")  # the scratch build link, not part of the sources
    subprocess.run(git + ["add", "-A"], cwd=tree, check=True)
    subprocess.run(git + ["commit", "-qm", "sources"], cwd=tree, check=True)
    env.update(HSMENROLL_PIN="24681357", HSMENROLL_SO_PIN="87654321")
    out = os.path.join(base, "out")
    for args in (["token", "init", "--config", "examples/config.json"],
                 ["ca", "init", "--config", "examples/config.json"],
                 ["run", "examples/fleet.ndjson", "--config", "examples/config.json", "-o", out,
                  "--progress", "never"]):
        p = subprocess.run(["./build/hsmenroll"] + args, cwd=tree, env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=BLOCK_TIMEOUT)
        if p.returncode != 0:
            fail("examples/config.json: hsmenroll %s exited %d:\n%s"
                 % (" ".join(args), p.returncode, p.stdout[-1500:]))
            return
    status = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"],
                            cwd=tree, stdout=subprocess.PIPE, text=True).stdout
    status = "\n".join(x for x in status.splitlines() if not x[3:].startswith("build/"))
    if status.strip():
        fail("a run with examples/config.json wrote into the sources:\n" + status)
    ca = os.path.join(env["HOME"], ".local", "share", "hsmenroll", "cas", "embedded", "root.pem")
    if not os.path.exists(ca):
        fail("examples/config.json: its CA is not in HOME/cas/embedded")


def main():
    readme = os.path.join(SRC, "README.md")
    blocks = sh_blocks(readme)
    entries = read_list(os.path.join(SRC, "tests", "readme-blocks.txt"))
    root = tempfile.mkdtemp(prefix="hsmenroll-readme.", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    try:
        seen = set()
        for i, (n, lines) in enumerate(blocks):
            first = next((x.strip() for x in lines if x.strip()), "")
            seen.add(first)
            if first not in entries:
                fail("README line %d: a ```sh block tests/readme-blocks.txt does not list "
                     "(add `run:`, `transcript:` or `skip:` with its first line):\n  %s" % (n, first))
                continue
            kind = entries[first][0]
            if kind == "run":
                run_block(root, n, lines, "block%d" % i)
            elif kind == "transcript":
                run_transcript(root, n, lines)
        for first in entries:
            if first not in seen:
                fail("tests/readme-blocks.txt lists a block README.md no longer has:\n  " + first)
        check_config_example(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if failures:
        print("test_readme: %d failure(s)" % len(failures), file=sys.stderr)
        return 1
    print("test_readme: %d blocks, all run or listed" % len(blocks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
