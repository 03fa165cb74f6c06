"""README.md, docs/*.md and ``--help`` agree with the code.

Every ``tlssniff CMD ... --option`` written in the documents is an option of CMD; every option
listed in the table of a command's own page (docs/live.md, docs/probe.md, docs/report.md) is
one of that command; and every option of every command is mentioned somewhere in the
documents, so none is known only to ``--help``.
"""

from __future__ import annotations

import re

import pytest
import typer

from tests.conftest import REPO, run_tlssniff
from tlssniff.cli import app

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
COMMAND_PAGES = {"live.md": "live", "probe.md": "probe", "report.md": "report"}
_OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-zA-Z])(?![\w-])")
# Where a command line ends: a pipe, a list operator, a comment, the end of a code span.
_END = re.compile(r"\s(?:\||;|&&|\|\||#)|`|$")


def _options() -> dict[str, set[str]]:
    group = typer.main.get_command(app)
    out = {}
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        opts: set[str] = {"--help", "-h"}  # click's own, not among the params
        for param in command.params:
            if getattr(param, "param_type_name", "") != "option":
                continue
            opts.update(getattr(param, "opts", ()))
            opts.update(getattr(param, "secondary_opts", ()))
        out[name] = opts
    return out


OPTIONS = _options()


def _mentions() -> list[tuple[str, int, str, str]]:
    """(file, line, command, option) of each ``tlssniff CMD ... --option`` in the documents."""
    found = []
    for path in DOCS:
        for no, line in enumerate(path.read_text().splitlines(), 1):
            for m in re.finditer(r"\btlssniff (analyze|live|report|verify|probe)\b", line):
                rest = line[m.end():]
                nxt = re.search(r"\btlssniff\b", rest)
                if nxt:
                    rest = rest[:nxt.start()]
                rest = rest[:_END.search(rest).start()]
                rest = re.sub(r"'[^']*'|\"[^\"]*\"", "", rest)  # quoted filters and jq programs
                for opt in _OPTION.findall(rest):
                    found.append((path.name, no, m.group(1), opt))
    return found


MENTIONS = _mentions()


def test_the_documents_mention_commands_with_options():
    assert len(MENTIONS) > 30  # the parser above finds what the documents show
    assert {c for _, _, c, _ in MENTIONS} == set(OPTIONS)  # each command, with options


@pytest.mark.parametrize("where,line,command,option", MENTIONS,
                         ids=[f"{f}:{n}:{c}{o}" for f, n, c, o in MENTIONS])
def test_every_documented_option_exists(where, line, command, option):
    assert option in OPTIONS[command], f"{where}:{line}: tlssniff {command} has no {option}"


def test_command_pages_list_only_options_of_their_command():
    for page, command in COMMAND_PAGES.items():
        for no, line in enumerate((REPO / "docs" / page).read_text().splitlines(), 1):
            if not line.startswith("| `-"):
                continue
            first = line.split("|")[1]
            for opt in _OPTION.findall(first):
                assert opt in OPTIONS[command], f"docs/{page}:{no}: {command} has no {opt}"


def test_every_option_is_documented():
    text = "\n".join(p.read_text() for p in DOCS)
    missing = []
    for command, opts in OPTIONS.items():
        for opt in sorted(opts - {"--help", "-h"}):
            if not opt.startswith("--"):
                continue
            if not re.search(re.escape(opt) + r"(?![\w-])", text):
                missing.append(f"{command} {opt}")
    assert not missing, f"options no document mentions: {missing}"


@pytest.mark.parametrize("command", sorted(OPTIONS))
def test_help_lists_every_option(command):
    """``tlssniff CMD --help`` shows each option the command takes (no hidden ones)."""
    text = run_tlssniff(command, "--help").stdout
    for opt in OPTIONS[command]:
        assert opt in text, f"tlssniff {command} --help does not show {opt}"
