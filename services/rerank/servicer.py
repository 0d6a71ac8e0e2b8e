"""RerankService handlers: proto in, `recsys.rerank` engine call out, proto back (conversions in convert.py).

RerankList decodes in a worker thread, so the event loop keeps serving (health, other requests) while a forward
runs. A bad request is INVALID_ARGUMENT naming the field (the engine's `FieldError`); a per-author cap that cannot
fill the page is FAILED_PRECONDITION with the reason and a `PreconditionFailure` violation of type `AUTHOR_CAP`
on `utility_options.max_items_per_author`; an unknown `model_version` NOT_FOUND listing the loaded versions;
overload is RESOURCE_EXHAUSTED from the server's in-flight RPC cap (`--max-concurrent-rpcs`).
"""

from __future__ import annotations

import asyncio

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from kmono.rerank.v1 import rerank_pb2, rerank_pb2_grpc

from libs.errors import FieldError, UnknownModelVersion
from libs.serving.errors import FailedPreconditionError, model_version_not_found
from libs.serving.inputs import field_violation
from recsys.rerank.serving.engine import RerankEngine
from recsys.rerank.serving.requests import AuthorCapInfeasible
from services.rerank import convert

CAP_FIELD = "utility_options.max_items_per_author"


class AuthorCapError(FailedPreconditionError):
    """FAILED_PRECONDITION for a cap that cannot fill the page, with a `PreconditionFailure` detail."""

    def __init__(self, error: AuthorCapInfeasible) -> None:
        super().__init__(
            str(error),
            reason="AUTHOR_CAP_INFEASIBLE",
            metadata={"field": CAP_FIELD, "fillable": str(error.fillable), "num_slots": str(error.num_slots)},
        )

    def status_details(self) -> list[Message]:
        violation = error_details_pb2.PreconditionFailure.Violation(
            type="AUTHOR_CAP", subject=CAP_FIELD, description=self.message
        )
        return [error_details_pb2.PreconditionFailure(violations=[violation])]


class RerankServicer(rerank_pb2_grpc.RerankServiceServicer):
    def __init__(self, engine: RerankEngine) -> None:
        self.engine = engine

    async def RerankList(
        self, request: rerank_pb2.RerankListRequest, context: grpc.aio.ServicerContext
    ) -> rerank_pb2.RerankListResponse:
        return await asyncio.to_thread(self._rerank, request)

    def _rerank(self, request: rerank_pb2.RerankListRequest) -> rerank_pb2.RerankListResponse:
        domain = convert.rerank_request(request)
        try:
            result = self.engine.rerank(domain)
        except FieldError as error:
            raise field_violation(error) from None
        except AuthorCapInfeasible as error:
            raise AuthorCapError(error) from None
        except UnknownModelVersion as error:
            raise model_version_not_found(error) from None
        return convert.rerank_response(result)
