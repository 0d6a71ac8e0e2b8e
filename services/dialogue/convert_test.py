"""Proto -> domain conversion of attachments: a live stream's window (found by the fuzzer: a huge Duration made
`ToTimedelta` overflow into INTERNAL) and the one-of source, each named by field."""

import pytest
from google.protobuf.duration_pb2 import Duration
from kmono.dialogue.v1 import dialogue_pb2

from libs.media.policy import MediaPolicy
from libs.serving.errors import InvalidArgumentError
from services.dialogue import convert


def live(window: Duration | None) -> dialogue_pb2.Attachment:
    ref = dialogue_pb2.LiveStreamRef(stream_id="s1", author_id="a1")
    if window is not None:
        ref.window.CopyFrom(window)
    return dialogue_pb2.Attachment(live_stream=ref)


def convert_one(message: dialogue_pb2.Attachment):
    return convert.attachments([message], "attachments", MediaPolicy(), 1 << 20)[0]


def test_live_window_defaults_reads_seconds_and_nanos():
    assert convert_one(live(None)).end == convert.DEFAULT_LIVE_WINDOW_SECONDS
    assert convert_one(live(Duration(seconds=90, nanos=500_000_000))).end == pytest.approx(90.5)


@pytest.mark.parametrize(
    "window",
    [
        Duration(seconds=315_576_000_000),
        Duration(seconds=-5),
        Duration(seconds=0),
        Duration(seconds=1, nanos=-2_000_000_000),
    ],
)
def test_out_of_range_windows_are_invalid_naming_the_field(window):
    with pytest.raises(InvalidArgumentError) as error:
        convert_one(live(window))
    assert "attachments[0].live_stream.window" in str(error.value)


def test_an_attachment_without_a_source_is_named():
    with pytest.raises(InvalidArgumentError, match=r"attachments\[0\]"):
        convert_one(dialogue_pb2.Attachment(caption="no media"))
