"""VideoGenerationService handlers: proto messages in, domain calls out. The engine is not built yet, so every RPC
answers UNIMPLEMENTED with a message that names the engine it waits for."""

from kmono.video.v1 import video_pb2_grpc

from services.skeleton import not_built_yet


class VideoGenerationServicer(video_pb2_grpc.VideoGenerationServiceServicer):
    CreateVideo = not_built_yet("CreateVideo", engine="MVideo, generation/mvideo")
    WatchOperation = not_built_yet("WatchOperation", engine="MVideo, generation/mvideo")
    DownloadArtifact = not_built_yet("DownloadArtifact", engine="MVideo, generation/mvideo")
