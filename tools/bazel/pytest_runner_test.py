from tools.bazel.pytest_runner import pytest_args


def test_plain_run_passes_files_through():
    assert pytest_args(["libs/x_test.py"], {}) == ["-p", "no:cacheprovider", "libs/x_test.py"]


def test_bazel_environment_maps_to_pytest_flags():
    args = pytest_args(
        ["a_test.py"], {"XML_OUTPUT_FILE": "/o/test.xml", "TEST_TMPDIR": "/t", "TESTBRIDGE_TEST_ONLY": "fast"}
    )
    assert args == [
        "-p",
        "no:cacheprovider",
        "--junitxml=/o/test.xml",
        "--basetemp=/t/pytest",
        "-k",
        "fast",
        "a_test.py",
    ]
