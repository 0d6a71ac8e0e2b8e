"""Where the embedded default MMBee model lives, and the one place its training recipe is written down
(torch-free, so configs and CLIs import it cheaply).

The folder is produced by `kmono mmbee train --preset default --out recsys/mmbee/defaults/model` (about 10 CPU
minutes; see `recsys.mmbee.pipeline`) and committed (model + snapshot, a few MB), so `kmono serve rank` scores
for real out of the box.
"""

from pathlib import Path

DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "model"
DEFAULT_WORLD_PRESET = "default"
