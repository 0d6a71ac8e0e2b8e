"""RerankService end to end over gRPC, with a real (tiny) Dual-Rerank model folder: pages that reorder the
candidates, both decoders, the utility options, the author cap (kept, or refused as FAILED_PRECONDITION when it
cannot fill the page), versions, and every bad input answered with the field that is wrong."""

from __future__ import annotations

import argparse
import math

import grpc
import pytest
from google.rpc import error_details_pb2
from kmono.common.v1 import features_pb2
from kmono.rerank.v1 import rerank_pb2, rerank_pb2_grpc

from libs.serving import find_detail
from libs.serving.testing.loopback import loopback_server, run_async, status_of
from recsys.data.pages import CATEGORIES
from recsys.rerank.serving.requests import MAX_ITEMS
from recsys.rerank.serving.testing import tiny_model_folder
from services.rerank import server


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("rerank")
    versions = [tiny_model_folder(root / "a", seed=0), tiny_model_folder(root / "b", seed=1)]
    return [root / "a", root / "b"], versions


def call(folders, *requests):
    """Answers (or the AioRpcError) of RerankList for each request, on one loopback server."""
    paths, _ = folders
    parser = argparse.ArgumentParser()
    server.CONFIG_TYPE.add_arguments(parser)
    flags = ["--port", "0", "--host", "127.0.0.1", "--torch-threads", "1"]
    for path in paths:
        flags += ["--model", str(path)]
    config = server.CONFIG_TYPE.from_args(parser.parse_args(flags))
    registrations, on_startup, on_shutdown = server.build(config)

    async def scenario():
        answers = []
        async with loopback_server(registrations, on_startup=on_startup, on_shutdown=on_shutdown) as (
            _,
            channel,
        ):
            stub = rerank_pb2_grpc.RerankServiceStub(channel)
            for request in requests:
                try:
                    answers.append(await stub.RerankList(request))
                except grpc.aio.AioRpcError as error:
                    answers.append(error)
        return answers

    return run_async(scenario(), timeout=120)


def item(i: int, author: str = "", **scores: float) -> rerank_pb2.RerankItem:
    message = rerank_pb2.RerankItem(
        item_id=f"v{i}", author_id=author, scores=scores or {"ctr": 0.05 * (i + 1)}
    )
    message.features.categorical_features["category"] = CATEGORIES[i % len(CATEGORIES)]
    return message


def request(count: int = 8, authors: str = "abcdefgh", **fields) -> rerank_pb2.RerankListRequest:
    message = rerank_pb2.RerankListRequest(user_id="u1", num_slots=4)
    message.items.extend(item(i, authors[i % len(authors)]) for i in range(count))
    for name, value in fields.items():
        if isinstance(value, rerank_pb2.UtilityOptions | features_pb2.FeatureSet):
            getattr(message, name).CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


def violation(error) -> tuple[grpc.StatusCode, str]:
    assert isinstance(error, grpc.aio.AioRpcError), error
    detail = find_detail(status_of(error), error_details_pb2.BadRequest)
    return error.code(), detail.field_violations[0].field if detail else ""


def test_a_page_is_num_slots_distinct_candidates_with_probabilities_for_both_decoders(folders):
    _, versions = folders
    nar, ar, default, everything = call(
        folders,
        request(decoder=rerank_pb2.DECODER_NON_AUTOREGRESSIVE),
        request(decoder=rerank_pb2.DECODER_AUTOREGRESSIVE),
        request(),
        request(num_slots=0, layout=rerank_pb2.LAYOUT_COLUMN),
    )
    candidates = {f"v{i}" for i in range(8)}
    for reply, slots in ((nar, 4), (ar, 4), (default, 4), (everything, 8)):
        ids = [slot.item_id for slot in reply.slots]
        assert [slot.position for slot in reply.slots] == list(range(slots))
        assert len(set(ids)) == slots and set(ids) <= candidates
        assert all(0 < slot.probability <= 1 and math.isfinite(slot.score) for slot in reply.slots)
        assert math.isfinite(reply.expected_utility) and reply.model_version == versions[0]
    assert [s.item_id for s in default.slots] == [s.item_id for s in nar.slots]  # NAR is the default
    assert set(s.item_id for s in everything.slots) == candidates  # 0 slots: every item, reordered


def test_options_and_versions_are_honoured(folders):
    _, versions = folders
    plain, weighted, pinned = call(
        folders,
        request(),
        request(
            utility_options=rerank_pb2.UtilityOptions(objective_weights={"ctr": 10.0}, diversity_weight=1.0)
        ),
        request(model_version=versions[1]),
    )
    assert weighted.expected_utility != pytest.approx(plain.expected_utility)
    assert pinned.model_version == versions[1]


def test_the_author_cap_is_kept_or_refused_with_the_reason(folders):
    capped = rerank_pb2.UtilityOptions(max_items_per_author=1)
    kept_nar, kept_ar, infeasible = call(
        folders,
        request(authors="aabbccdd", utility_options=capped),
        request(authors="aabbccdd", utility_options=capped, decoder=rerank_pb2.DECODER_AUTOREGRESSIVE),
        request(authors="aaaabbbb", utility_options=capped),
    )
    author = {f"v{i}": "aabbccdd"[i] for i in range(8)}
    for reply in (kept_nar, kept_ar):
        authors = [author[slot.item_id] for slot in reply.slots]
        assert len(set(authors)) == len(authors) == 4
    assert isinstance(infeasible, grpc.aio.AioRpcError)
    assert infeasible.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (
        "max_items_per_author=1" in infeasible.details()
        and "at most 2 of the 4 slots" in infeasible.details()
    )
    failure = find_detail(status_of(infeasible), error_details_pb2.PreconditionFailure)
    assert failure.violations[0].subject == "utility_options.max_items_per_author"


def _bad_requests():
    duplicate = request()
    duplicate.items[3].item_id = "v1"
    nan_score = request()
    nan_score.items[2].scores["ctr"] = float("nan")
    inf_other = request()
    inf_other.items[5].scores["gtr"] = float("inf")
    empty_id = request()
    empty_id.items[0].item_id = ""
    unread = request()
    unread.items[1].features.numeric_features["age"] = 1.0
    too_many = request(count=MAX_ITEMS + 1, authors="abc")
    no_user = request()
    no_user.user_id = ""
    user_features = request(user_features=features_pb2.FeatureSet(numeric_features={"age": 3.0}))
    options = rerank_pb2.UtilityOptions
    return [
        (rerank_pb2.RerankListRequest(user_id="u1"), "items"),
        (too_many, "items"),
        (duplicate, "items[3].item_id"),
        (empty_id, "items[0].item_id"),
        (nan_score, 'items[2].scores["ctr"]'),
        (inf_other, 'items[5].scores["gtr"]'),
        (unread, 'items[1].features.numeric_features["age"]'),
        (no_user, "user_id"),
        (user_features, 'user_features.numeric_features["age"]'),
        (request(num_slots=9), "num_slots"),
        (request(num_slots=-1), "num_slots"),
        (request(count=13, num_slots=0), "num_slots"),  # every item: more slots than the tiny model's 12
        (request(utility_options=options(objective_weights={"gtr": 1.0})), 'utility_options.objective_weights["gtr"]'),
        (request(utility_options=options(objective_weights={"ctr": -1.0})), 'utility_options.objective_weights["ctr"]'),
        (request(utility_options=options(diversity_weight=float("nan"))), "utility_options.diversity_weight"),
        (request(utility_options=options(max_items_per_author=-2)), "utility_options.max_items_per_author"),
        (request(decoder=7), "decoder"),
        (request(layout=9), "layout"),
    ]  # fmt: skip


def test_bad_input_is_invalid_argument_naming_the_field(folders):
    cases = _bad_requests()
    answers = call(folders, *(bad for bad, _ in cases))
    for (_, field), answer in zip(cases, answers, strict=True):
        assert violation(answer) == (grpc.StatusCode.INVALID_ARGUMENT, field)


def test_an_unknown_model_version_is_not_found_naming_the_loaded_ones(folders):
    _, versions = folders
    (error,) = call(folders, request(model_version="rerank-v999"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "rerank-v999" in error.details() and versions[0] in error.details()


def test_model_folders_come_from_flags_else_the_environment_else_the_embedded_default(monkeypatch):
    from pathlib import Path

    from recsys.rerank.defaults import DEFAULT_MODEL_PATH

    def config(*flags):
        parser = argparse.ArgumentParser()
        server.CONFIG_TYPE.add_arguments(parser)
        return server.CONFIG_TYPE.from_args(parser.parse_args(list(flags)))

    monkeypatch.delenv("KMONO_RERANK_MODELS", raising=False)
    assert config().models == (DEFAULT_MODEL_PATH,)
    monkeypatch.setenv("KMONO_RERANK_MODELS", "/m/a,/m/b")
    monkeypatch.setenv("KMONO_RERANK_TORCH_THREADS", "3")
    assert config().models == (Path("/m/a"), Path("/m/b")) and config().torch_threads == 3
    assert config("--model", "/m/c", "--torch-threads", "1").models == (Path("/m/c"),)
