"""RerankService handlers: proto messages in, domain calls out. The engine is not built yet, so every RPC
answers UNIMPLEMENTED with a message that names the engine it waits for."""

from kmono.rerank.v1 import rerank_pb2_grpc

from libs.serving.service import not_built_yet


class RerankServicer(rerank_pb2_grpc.RerankServiceServicer):
    RerankList = not_built_yet("RerankList", engine="Dual-Rerank, recsys/rerank")
