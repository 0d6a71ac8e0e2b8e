"""RankingService end to end over gRPC, with a real (tiny, trained) MMBee model folder: scoring, top-k,
versions, the cold-start path, request overrides, and every bad input answered with the field that is wrong."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from kmono.common.v1 import features_pb2, tensor_pb2
from kmono.rank.v1 import rank_pb2, rank_pb2_grpc

from libs.cli.main import main as kmono_main
from libs.serving import find_detail
from libs.serving.inputs import to_float_tensor
from libs.serving.testing.loopback import loopback_server, run_async, status_of
from recsys.mmbee import cli as mmbee_cli
from recsys.mmbee.engine import RankingEngine
from recsys.mmbee.testing import tiny_model_folder
from services.rank import server


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("rank") / "model"
    tiny_model_folder(path)
    return path


@pytest.fixture(scope="module")
def known(folder):
    streams = RankingEngine.load([folder]).default.featurizer.snapshot.table("streams")
    return list(
        zip(
            streams["key"].to_pylist()[:30],
            [f"a{a}" for a in streams["author"].to_pylist()[:30]],
            strict=True,
        )
    )


def call(folder, *requests):
    """Answers (or the AioRpcError) of RankCandidates for each request, on one loopback server."""
    parser = argparse.ArgumentParser()
    server.CONFIG_TYPE.add_arguments(parser)
    flags = ["--port", "0", "--host", "127.0.0.1", "--torch-threads", "1", "--model", str(folder)]
    config = server.CONFIG_TYPE.from_args(parser.parse_args(flags))
    registrations, on_startup, on_shutdown = server.build(config)

    async def scenario():
        answers = []
        async with loopback_server(registrations, on_startup=on_startup, on_shutdown=on_shutdown) as (
            _,
            channel,
        ):
            stub = rank_pb2_grpc.RankingServiceStub(channel)
            for request in requests:
                try:
                    answers.append(await stub.RankCandidates(request))
                except grpc.aio.AioRpcError as error:
                    answers.append(error)
        return answers

    return run_async(scenario(), timeout=120)


def request(known, **fields) -> rank_pb2.RankCandidatesRequest:
    message = rank_pb2.RankCandidatesRequest(user_id="u3", top_k=5)
    message.candidates.extend(rank_pb2.Candidate(stream_id=s, author_id=a) for s, a in known)
    for name, value in fields.items():
        setattr(message, name, value)
    return message


def violation(error) -> tuple[grpc.StatusCode, str]:
    assert isinstance(error, grpc.aio.AioRpcError), error
    detail = find_detail(status_of(error), error_details_pb2.BadRequest)
    return error.code(), detail.field_violations[0].field if detail else ""


def test_rank_returns_the_top_k_best_first_with_the_model_version(folder, known):
    (reply,) = call(folder, request(known))
    assert [c.rank for c in reply.scored_candidates] == [1, 2, 3, 4, 5]
    scores = [c.gtr_score for c in reply.scored_candidates]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert reply.model_version.startswith("mmbee-sim-")
    assert {c.stream_id for c in reply.scored_candidates} <= {s for s, _ in known}


def test_cold_start_and_overrides_are_scored(folder, known):
    cold = rank_pb2.RankCandidatesRequest(user_id="brand-new-user")
    cold.candidates.add(stream_id="never-seen-stream", author_id="never-seen-streamer")
    override = request(known[:1])
    segment = np.random.default_rng(1).normal(size=(10, 16)).astype(np.float32) * 3
    override.candidates[0].features.embeddings["visual"].CopyFrom(to_float_tensor(segment))
    override.user_features.numeric_features["log_gifts"] = 4.0
    plain, overridden, cold_reply = call(folder, request(known[:1]), override, cold)
    assert overridden.scored_candidates[0].gtr_score != pytest.approx(
        plain.scored_candidates[0].gtr_score, abs=1e-6
    )
    assert len(cold_reply.scored_candidates) == 1 and np.isfinite(cold_reply.scored_candidates[0].gtr_score)


def _bad_requests(known):
    def with_candidates(cands):
        message = rank_pb2.RankCandidatesRequest(user_id="u3")
        message.candidates.extend(rank_pb2.Candidate(stream_id=s, author_id=a) for s, a in cands)
        return message

    too_many = with_candidates([(f"s{i}", "a1") for i in range(501)])
    duplicate = with_candidates([known[0], known[0]])
    nan = request(known[:2])
    nan.candidates[1].features.numeric_features["gift_rate"] = float("nan")
    sized = request(known[:1])
    sized.candidates[0].features.embeddings["visual"].CopyFrom(to_float_tensor(np.zeros((10, 7), np.float32)))
    short_data = request(known[:1])
    short_data.candidates[0].features.embeddings["speech"].CopyFrom(
        tensor_pb2.Tensor(dtype=tensor_pb2.DATA_TYPE_FLOAT32, dims=[10, 16], data=b"\0" * 12)
    )
    inf_segment = request(known[:1])
    inf_segment.candidates[0].features.embeddings["comments"].CopyFrom(
        to_float_tensor(np.full((10, 16), np.inf, np.float32))
    )
    unknown_feature = request(known[:1])
    unknown_feature.user_features.CopyFrom(features_pb2.FeatureSet(numeric_features={"age": 3.0}))
    return [
        (with_candidates([]), "candidates"),
        (too_many, "candidates"),
        (duplicate, "candidates[1].stream_id"),
        (with_candidates([("", "a1")]), "candidates[0].stream_id"),
        (
            rank_pb2.RankCandidatesRequest(candidates=[rank_pb2.Candidate(stream_id="s", author_id="a")]),
            "user_id",
        ),
        (nan, 'candidates[1].features.numeric_features["gift_rate"]'),
        (sized, 'candidates[0].features.embeddings["visual"]'),
        (short_data, 'candidates[0].features.embeddings["speech"].data'),
        (inf_segment, 'candidates[0].features.embeddings["comments"]'),
        (unknown_feature, 'user_features.numeric_features["age"]'),
        (request(known[:2], top_k=-3), "top_k"),
    ]


def test_bad_input_is_invalid_argument_naming_the_field(folder, known):
    cases = _bad_requests(known)
    answers = call(folder, *(bad for bad, _ in cases))
    for (_, field), answer in zip(cases, answers, strict=True):
        assert violation(answer) == (grpc.StatusCode.INVALID_ARGUMENT, field)


def test_an_unknown_model_version_is_not_found_naming_the_loaded_ones(folder, known):
    (error,) = call(folder, request(known, model_version="mmbee-v999"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "mmbee-v999" in error.details() and "mmbee-sim-" in error.details()


def test_kmono_mmbee_serve_passes_every_flag_to_the_rank_service():
    """`kmono mmbee serve --port 0 --help` is `kmono serve rank --port 0 --help` (run as `python -m services.rank`)."""
    code = (
        f"import sys; from {kmono_main.__module__} import main; from {mmbee_cli.__name__} import register; "
        "sys.exit(main(sys.argv[1:], registrars=[('mmbee', register)]))"
    )
    answer = subprocess.run(
        [sys.executable, "-c", code, "mmbee", "serve", "--port", "0", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(sys.path),
        },  # the same imports as this process (Bazel)
    )
    assert answer.returncode == 0, answer.stderr
    assert "kmono serve rank" in answer.stdout and "--model" in answer.stdout
