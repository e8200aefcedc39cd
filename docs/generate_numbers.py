"""Regenerate the numbers that README.md and the docs quote from the command line.

Run from the repository root::

    python docs/generate_numbers.py            # rewrite the tables, print the figures
    python docs/generate_numbers.py --check    # only report what differs (exit 1 if any)
    python docs/generate_numbers.py --mnist    # also the MNIST-17 figures (minutes)

The main job's table is rewritten in place, in README.md (the first ``text``
block) and in the user guide's command-line section; its last column (seconds)
depends on the machine, the other columns do not (the command runs single-threaded
by default). The figures quoted in prose are printed with the sentence they belong
in, to be copied by hand. ``tests/test_readme.py`` checks the README's table
against the current code.
"""

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAIN_JOB = ["attack", "--dataset", "digits", "--model", "logreg"]
FILES = (ROOT / "README.md", ROOT / "docs" / "user_guide" / "gradient_canceling.rst")


def table_span(lines, path):
    """(start, stop) of the main job's table among ``lines`` (no trailing blanks)."""
    indent = "   " if path.suffix == ".rst" else ""
    head = indent + "digits / logreg / target gradpc"
    start = next((i for i, line in enumerate(lines) if line.startswith(head)), None)
    if start is None:
        raise SystemExit(f"{path}: no main-job table found")
    stop = start + 1
    while stop < len(lines):
        line = lines[stop]
        if line.startswith("```") or (indent and line.strip() and not line.startswith(indent)):
            break
        stop += 1
    while not lines[stop - 1].strip():
        stop -= 1
    return start, stop


def skpoison(*args):
    """stdout of ``python -m skpoison ARGS --quiet`` (single-threaded by default)."""
    done = subprocess.run(
        [sys.executable, "-m", "skpoison", *args, "--quiet"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    return done.stdout.rstrip("\n")


def accuracies(table):
    """{eps_d: accuracy %} of a printed attack table."""
    rows = table.splitlines()[3:]
    return {row.split()[0]: row.split()[2] for row in rows}


def head_figures(table):
    head = table.splitlines()[0]
    return dict(re.findall(r"(clean accuracy|target accuracy) ([\d.]+%)", head))


def rewrite_tables(table, check):
    stale = []
    for path in FILES:
        lines = path.read_text().split("\n")
        start, stop = table_span(lines, path)
        indent = "   " if path.suffix == ".rst" else ""
        block = [(indent + line).rstrip() if line else "" for line in table.splitlines()]
        if lines[start:stop] != block:
            stale.append(str(path.relative_to(ROOT)))
            if not check:
                path.write_text("\n".join(lines[:start] + block + lines[stop:]))
    return stale


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report, rewrite nothing")
    parser.add_argument("--mnist", action="store_true", help="also the MNIST-17 figures")
    args = parser.parse_args(argv)

    table = skpoison(*MAIN_JOB)
    print("$ skpoison " + " ".join(MAIN_JOB) + "\n" + table + "\n")
    stale = rewrite_tables(table, args.check)
    print(("stale: " if args.check else "rewritten: ") + (", ".join(stale) or "nothing"))

    scaled = skpoison("attack", "--dataset", "digits", "--epsilon-w", "1", "--target-tau", "0.1")
    figures, acc = head_figures(scaled), accuracies(scaled)
    print(f"\n--epsilon-w 1 --target-tau 0.1 (README): target accuracy "
          f"{figures['target accuracy']}, clean {figures['clean accuracy']}, "
          f"{acc['0.03']}% at 0.03, {acc['1']}% at 1")

    if args.mnist:
        mnist = skpoison("attack", "--dataset", "mnist17", "--model", "logreg",
                         "--target-tau", "1", "--epsilon-d", "0.1", "tau")
        print("\nMNIST-17 (README, Data):\n" + mnist)
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
