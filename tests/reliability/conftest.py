"""The reliability suite's figures table: every test reports its figures (harness.report); they are printed as one
table at the end of the run, in `make test` (bounded) and `make reliability` (long)."""

from tests.reliability.harness import FIGURES, LONG


def pytest_terminal_summary(terminalreporter):
    if not FIGURES:
        return
    mode = "long" if LONG else "bounded"
    width = max(len(name) for name in FIGURES)
    terminalreporter.section(f"reliability figures ({mode} mode)")
    for name, value in sorted(FIGURES.items()):
        terminalreporter.write_line(f"{name:<{width}}  {value}")
