"""RankingService handlers: proto in, `recsys.mmbee` engine call out, proto back (conversions in convert.py).

RankCandidates scores in a worker thread, so the event loop keeps serving (health, other requests) while a
forward runs. A bad request is INVALID_ARGUMENT naming the field (the engine's `FieldError`), an unknown
`model_version` NOT_FOUND listing the loaded versions; overload is RESOURCE_EXHAUSTED from the server's
in-flight RPC cap (`--max-concurrent-rpcs`).
"""

from __future__ import annotations

import asyncio

import grpc
from kmono.rank.v1 import rank_pb2, rank_pb2_grpc

from libs.errors import FieldError, UnknownModelVersion
from libs.serving.errors import model_version_not_found
from libs.serving.inputs import field_violation
from recsys.mmbee.engine import RankingEngine
from services.rank import convert


class RankingServicer(rank_pb2_grpc.RankingServiceServicer):
    def __init__(self, engine: RankingEngine) -> None:
        self.engine = engine

    async def RankCandidates(
        self, request: rank_pb2.RankCandidatesRequest, context: grpc.aio.ServicerContext
    ) -> rank_pb2.RankCandidatesResponse:
        return await asyncio.to_thread(self._rank, request)

    def _rank(self, request: rank_pb2.RankCandidatesRequest) -> rank_pb2.RankCandidatesResponse:
        domain = convert.rank_request(request)
        try:
            result = self.engine.score(domain)
        except FieldError as error:
            raise field_violation(error) from None
        except UnknownModelVersion as error:
            raise model_version_not_found(error) from None
        return convert.rank_response(result)
