"""The exported MMBee programs (torch.export, dynamic batch: fusion.pt2 -> h_m per streamer and segment,
scorer.pt2 taking h_m, request.pt2 scoring one viewer's candidates) and the model folder the ranking service
loads (config.json, model.safetensors, scorer.pt2, fusion.pt2, request.pt2, metrics.json); see `scorer` for the
layout.

from recsys.mmbee.export import save_model_folder, load_model_folder, export_scorer, load_scorer, verify_export
"""

from recsys.mmbee.export.scorer import (
    FORMAT_VERSION,
    MAX_BATCH,
    CheckedProgram,
    ExportMismatchError,
    ModelFolderError,
    Scorer,
    export_scorer,
    load_model_folder,
    load_scorer,
    save_model_folder,
    single_viewer,
    verify_export,
)

__all__ = [
    "FORMAT_VERSION",
    "MAX_BATCH",
    "CheckedProgram",
    "ExportMismatchError",
    "ModelFolderError",
    "Scorer",
    "export_scorer",
    "load_model_folder",
    "load_scorer",
    "save_model_folder",
    "single_viewer",
    "verify_export",
]
