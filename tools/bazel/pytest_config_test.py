import configparser

from tools.bazel.pytest_config import ini_text

PYPROJECT = """
[project]
name = "x"

[tool.pytest.ini_options]
python_files = ["*_test.py"]
addopts = "-q -p no:cacheprovider --timeout=300"
filterwarnings = ["ignore::DeprecationWarning", "error:some message:UserWarning"]
xfail_strict = true
"""


def test_ini_matches_the_pyproject_table():
    parser = configparser.ConfigParser()
    parser.read_string(ini_text(PYPROJECT))
    section = parser["pytest"]
    assert section["python_files"].split() == ["*_test.py"]
    assert section["addopts"] == "-q -p no:cacheprovider --timeout=300"
    assert section["filterwarnings"].strip().splitlines() == [
        "ignore::DeprecationWarning",
        "error:some message:UserWarning",
    ]
    assert section["xfail_strict"] == "true"


def test_other_tables_do_not_change_the_ini():
    assert ini_text(PYPROJECT) == ini_text(PYPROJECT.replace('name = "x"', 'name = "y"\nversion = "2"'))


def test_no_pytest_table_gives_an_empty_section():
    assert ini_text("[project]\nname = 'x'\n") == "[pytest]\n"
