"""MaskService handlers: proto messages in, domain calls out. The engine is not built yet, so every RPC
answers UNIMPLEMENTED with a message that names the engine it waits for."""

from kmono.masks.v1 import masks_pb2_grpc

from services.skeleton import not_built_yet


class MaskServicer(masks_pb2_grpc.MaskServiceServicer):
    ExtractMasks = not_built_yet("ExtractMasks", engine="generation/masks")
    EditMasks = not_built_yet("EditMasks", engine="generation/masks")
    ComposeMasks = not_built_yet("ComposeMasks", engine="generation/masks")
    SynthesizeMasks = not_built_yet("SynthesizeMasks", engine="generation/masks")
    WatchOperation = not_built_yet("WatchOperation", engine="generation/masks")
