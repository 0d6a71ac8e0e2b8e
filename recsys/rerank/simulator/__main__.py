"""`python -m recsys.rerank.simulator`: print the simulator's calibration table (see `cli.py`)."""

from recsys.rerank.simulator.cli import main

main()
