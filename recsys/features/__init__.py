"""Versioned feature and neighbour snapshots that the offline jobs write and training and serving both read.

    from recsys.features import Snapshot, SnapshotWriter, SnapshotError

See `recsys.features.snapshot` for the layout (Parquet + one LMDB index + .npy + manifest) and its guarantees.
The names load on first use.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={"snapshot": ["FORMAT_VERSION", "Snapshot", "SnapshotError", "SnapshotWriter"]},
)
