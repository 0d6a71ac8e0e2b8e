"""RankingService handlers: proto messages in, domain calls out. The engine is not built yet, so every RPC
answers UNIMPLEMENTED with a message that names the engine it waits for."""

from kmono.rank.v1 import rank_pb2_grpc

from libs.serving.service import not_built_yet


class RankingServicer(rank_pb2_grpc.RankingServiceServicer):
    RankCandidates = not_built_yet("RankCandidates", engine="MMBee, recsys/mmbee")
