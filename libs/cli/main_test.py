import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from libs.cli.main import UsageError, build_parser, discover_registrars, main


def _register_echo(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("echo", help="print a word")
    parser.add_argument("word")

    def run(args: argparse.Namespace) -> int:
        if args.word == "bad":
            raise UsageError("bad is not allowed; pick another word")
        sys.stdout.write(args.word + "\n")
        return 0

    parser.set_defaults(func=run)


REGISTRARS = [("echo", _register_echo)]

REPO_ROOT = Path(__file__).absolute().parents[2]  # not resolved: under Bazel this is the runfiles tree


def test_subcommand_runs_and_returns_exit_code(capsys):
    assert main(["echo", "hi"], registrars=REGISTRARS) == 0
    assert capsys.readouterr().out.strip() == "hi"


def test_usage_error_is_one_line_with_exit_code_2(capsys):
    assert main(["echo", "bad"], registrars=REGISTRARS) == 2
    err = capsys.readouterr().err
    assert "pick another word" in err and "Traceback" not in err


def test_missing_subcommand_is_a_usage_error():
    with pytest.raises(SystemExit) as exc:
        build_parser(REGISTRARS).parse_args([])
    assert exc.value.code == 2


def test_installed_entry_points_include_serve():
    names = [name for name, _ in discover_registrars()]
    assert "serve" in names


def test_help_lists_every_installed_subcommand():
    text = build_parser().format_help()
    for name, _ in discover_registrars():
        assert name in text


# Builds the whole `kmono` parser from the installed entry points and formats the help of every (sub)command,
# as `kmono ... --help` does; prints the heavy modules that got imported.
_HELP_IMPORTS = """
import argparse, json, sys
from libs.cli.main import build_parser, discover_registrars

def walk(parser):
    parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                walk(sub)

walk(build_parser())
heavy = [m for m in ("torch", "diffusers", "transformers") if m in sys.modules]
print(json.dumps({"plugins": [name for name, _ in discover_registrars()], "heavy": heavy}))
"""


def test_help_of_every_plugin_imports_no_torch():
    """Plug-ins build parsers only; torch, diffusers and transformers load inside the command handlers."""
    result = subprocess.run(
        [sys.executable, "-c", _HELP_IMPORTS], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "serve" in report["plugins"]
    assert report["heavy"] == [], f"`kmono --help` imported {report['heavy']} (plug-ins: {report['plugins']})"


def test_a_subcommand_summary_with_a_percent_sign_reads_right_in_both_helps():
    from libs.cli.main import add_subcommand

    parser = argparse.ArgumentParser(prog="kmono")
    commands = parser.add_subparsers()
    sub = add_subcommand(commands, "eval", "every model as %% of the optimum", "  kmono eval\n")
    assert "every model as % of the optimum" in parser.format_help()
    assert "Every model as % of the optimum." in sub.format_help() and "%%" not in sub.format_help()
