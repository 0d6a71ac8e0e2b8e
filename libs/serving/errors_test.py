"""Domain errors -> google.rpc.Status (AIP-193), without a server."""

import logging

import grpc
import pytest
from google.rpc import error_details_pb2

from libs.serving.errors import (
    ELLIPSIS,
    ERROR_DOMAIN,
    MAX_DESCRIPTION_BYTES,
    MAX_ECHO_CHARS,
    MAX_FIELD_VIOLATIONS,
    MAX_MESSAGE_BYTES,
    FailedPreconditionError,
    InvalidArgumentError,
    KmonoError,
    NotFoundError,
    ResourceExhaustedError,
    UnavailableError,
    bound_echo,
    bound_text,
    find_detail,
    status_code,
    status_from_exception,
)


def test_invalid_argument_carries_error_info_and_field_violations():
    error = InvalidArgumentError([("prompt", "must not be empty"), ("num_frames", "must be <= 49")])
    assert isinstance(error, ValueError)
    status = status_from_exception(error)
    assert status_code(status) is grpc.StatusCode.INVALID_ARGUMENT
    assert status.message == "invalid argument: prompt: must not be empty; num_frames: must be <= 49"
    info = find_detail(status, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == ("INVALID_ARGUMENT", ERROR_DOMAIN)
    bad_request = find_detail(status, error_details_pb2.BadRequest)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("prompt", "must not be empty"),
        ("num_frames", "must be <= 49"),
    ]


def test_invalid_argument_single_and_custom_reason():
    error = InvalidArgumentError.single("mask_video", "frame count differs", reason="MASK_MISMATCH")
    status = status_from_exception(error)
    assert find_detail(status, error_details_pb2.ErrorInfo).reason == "MASK_MISMATCH"
    assert find_detail(status, error_details_pb2.BadRequest).field_violations[0].field == "mask_video"
    with pytest.raises(ValueError, match="at least one field violation"):
        InvalidArgumentError([])


def test_resource_exhausted_carries_retry_info():
    status = status_from_exception(ResourceExhaustedError(2.5, "QUEUE_FULL", metadata={"queueDepth": 12}))
    assert status_code(status) is grpc.StatusCode.RESOURCE_EXHAUSTED
    info = find_detail(status, error_details_pb2.ErrorInfo)
    assert info.reason == "QUEUE_FULL"
    assert dict(info.metadata) == {"queueDepth": "12"}
    retry = find_detail(status, error_details_pb2.RetryInfo)
    assert retry.retry_delay.ToNanoseconds() == 2_500_000_000


def test_unavailable_retry_info_is_optional():
    assert (
        find_detail(status_from_exception(UnavailableError("warming up")), error_details_pb2.RetryInfo)
        is None
    )
    status = status_from_exception(UnavailableError("warming up", retry_after_seconds=3))
    assert find_detail(status, error_details_pb2.RetryInfo).retry_delay.seconds == 3


def test_not_found_carries_resource_info():
    status = status_from_exception(
        NotFoundError("no such operation", resource_type="operation", resource_name="operations/abc")
    )
    assert status_code(status) is grpc.StatusCode.NOT_FOUND
    resource = find_detail(status, error_details_pb2.ResourceInfo)
    assert (resource.resource_type, resource.resource_name) == ("operation", "operations/abc")
    assert find_detail(status_from_exception(NotFoundError("gone")), error_details_pb2.ResourceInfo) is None


def test_every_domain_error_has_error_info_with_its_default_reason():
    status = status_from_exception(FailedPreconditionError("model not loaded"))
    assert status_code(status) is grpc.StatusCode.FAILED_PRECONDITION
    assert status.message == "model not loaded"
    assert find_detail(status, error_details_pb2.ErrorInfo).reason == "FAILED_PRECONDITION"


@pytest.mark.parametrize("reason", ["lower_case", "HAS-DASH", "_LEADING", "X" * 64])
def test_reason_must_be_upper_snake_case(reason):
    with pytest.raises(ValueError, match="UPPER_SNAKE_CASE"):
        KmonoError("x", reason=reason)


def test_unexpected_exception_is_internal_and_logged_with_error_id(caplog):
    caplog.set_level(logging.ERROR, logger="libs.serving.errors")
    try:
        raise RuntimeError("database password is hunter2")
    except RuntimeError as raised:
        exc = raised
        status = status_from_exception(exc)
    assert status_code(status) is grpc.StatusCode.INTERNAL
    error_id = find_detail(status, error_details_pb2.ErrorInfo).metadata["errorId"]
    assert status.message == f"internal error (error id {error_id})"
    assert "hunter2" not in status.SerializeToString().decode("latin-1")
    (record,) = caplog.records
    assert error_id in record.getMessage()
    assert record.exc_info[1] is exc  # the traceback goes to the log only


def _trailer_bytes(status) -> int:
    """What the status costs in a client's metadata: the percent-encoded message plus the base64 details."""
    import base64
    from urllib.parse import quote

    return len(quote(status.message, safe=" ")) + len(base64.b64encode(status.SerializeToString()))


def test_a_long_echoed_name_is_cut_to_128_characters_with_an_ellipsis_everywhere_it_appears():
    name = "operations/" + "x" * 8000
    status = status_from_exception(
        NotFoundError(f"operation {name!r} not found", resource_type="operation", resource_name=name)
    )
    assert status_code(status) is grpc.StatusCode.NOT_FOUND
    echoed = repr(name)[:MAX_ECHO_CHARS] + ELLIPSIS
    assert status.message == f"operation {echoed} not found"
    resource = find_detail(status, error_details_pb2.ResourceInfo)
    assert resource.resource_name == name[:MAX_ECHO_CHARS] + ELLIPSIS
    assert resource.description == status.message
    assert _trailer_bytes(status) < 2048  # was > 32 KiB: over gRPC's default 8 KiB metadata limit


def test_messages_descriptions_and_metadata_are_bounded_and_short_ones_kept():
    words = " ".join(["word"] * 5000)  # long, but no single long run: cut as a whole
    error = InvalidArgumentError(
        [(f"labels[{i}]", words) for i in range(100)],
        metadata={"value": "v" * 10_000, "short": "ok"},
    )
    status = status_from_exception(error)
    assert len(status.message.encode()) <= MAX_MESSAGE_BYTES and status.message.endswith(ELLIPSIS)
    assert status.message.startswith("invalid argument: labels[0]: word word")
    violations = find_detail(status, error_details_pb2.BadRequest).field_violations
    assert len(violations) == MAX_FIELD_VIOLATIONS
    assert all(len(v.description.encode()) <= MAX_DESCRIPTION_BYTES for v in violations)
    assert [v.field for v in violations] == [f"labels[{i}]" for i in range(MAX_FIELD_VIOLATIONS)]
    metadata = find_detail(status, error_details_pb2.ErrorInfo).metadata
    assert metadata["short"] == "ok" and metadata["value"] == "v" * MAX_ECHO_CHARS + ELLIPSIS
    assert _trailer_bytes(status) < 8192
    assert status_from_exception(InvalidArgumentError.single("prompt", "x" * 128)).message == (
        "invalid argument: prompt: " + "x" * 128
    )


def test_multibyte_text_is_cut_on_a_character_boundary():
    text = "狗" * 1000
    cut = bound_text(text, 100)
    assert len(cut.encode()) <= 100 and cut.endswith(ELLIPSIS) and cut.startswith("狗" * 30)
    assert bound_text("ok", 100) == "ok" and bound_echo("y" * 200, 3) == "yyy" + ELLIPSIS
