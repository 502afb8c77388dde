"""docs/import.md runs as written: in a fresh directory, its `<!-- file: NAME -->` blocks are
written as files, its `<!-- run -->` python blocks executed, and every `$ dcihub ...` and
`$ cat FILE` line of its console blocks run in order, printing what the page shows (durations
aside)."""

from __future__ import annotations

import re
import shlex

import pytest
from typer.testing import CliRunner

from dcihub.cli import app
from specdir import PROJECT_ROOT

DOC = PROJECT_ROOT / "docs" / "import.md"
BLOCK = re.compile(
    r"(?:<!-- (file: (?P<name>\S+)|run) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)^```", re.S | re.M
)


def normal(text: str) -> list[str]:
    return [re.sub(r" in \d+\.\ds$", " in Ns", line.rstrip()) for line in text.strip().splitlines()]


def test_the_import_guide_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    commands = 0
    for match in BLOCK.finditer(DOC.read_text("utf-8")):
        body, lang, name = match["body"], match["lang"], match["name"]
        if name:
            (tmp_path / name).write_text(
                body, encoding="latin-1" if name == "people.csv" else "utf-8"
            )
        elif match.group(0).startswith("<!-- run -->"):
            exec(compile(body, "docs/import.md", "exec"), {})
        elif lang == "console":
            for step in re.split(r"^\$ ", body, flags=re.M)[1:]:
                command, _, expected = step.partition("\n")
                args = shlex.split(command)
                if args[0] == "cat":
                    shown = (tmp_path / args[1]).read_text("utf-8")
                else:
                    assert args[0] == "dcihub", command
                    result = CliRunner().invoke(app, args[1:], env={"COLUMNS": "200"})
                    assert result.exit_code in (0, 1), result.output
                    shown = result.stdout
                assert normal(shown) == normal(expected), f"$ {command}\n{shown}"
                commands += 1
    assert commands >= 7


@pytest.mark.parametrize("page", ["README.md", "docs/cli.md"])
def test_the_guide_is_linked(page):
    assert "import.md" in (PROJECT_ROOT / page).read_text("utf-8")
