import argparse
import sys

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
