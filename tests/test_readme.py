"""README.md quotes what the current code prints (regenerate with docs/generate_numbers.py)."""

from pathlib import Path

from skpoison.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"


def _blocks(language):
    """The fenced blocks of README.md in ``language``, in order."""
    blocks, current = [], None
    for line in README.read_text().splitlines():
        if current is None and line == f"```{language}":
            current = []
        elif current is not None and line.startswith("```"):
            blocks.append(current)
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def _without_seconds(lines):
    # the last column is the wall-clock time of each budget, the only machine-dependent
    # one (its width can change the header's spacing); every other cell must match
    head, blank, columns, *rows = lines
    return [head, blank, columns.split()] + [row.rsplit(None, 1)[0] for row in rows]


def test_readme_first_block_is_the_two_commands():
    assert _blocks("bash")[0] == [
        'pip install "torch==2.13.0" -e . && skpoison attack --dataset digits --model logreg',
        'pip install "torch==2.13.0" -e ".[test]" && python -m pytest -m "not slow"',
    ]


def test_readme_main_job_table_is_what_the_command_prints(capsys):
    assert main(["attack", "--dataset", "digits", "--model", "logreg", "--quiet"]) == 0
    printed = capsys.readouterr().out.rstrip("\n").splitlines()
    quoted = _blocks("text")[0]
    assert len(printed) == len(quoted) == 3 + 5  # head, blank, columns, 5 budgets
    assert _without_seconds(quoted) == _without_seconds(printed)
