"""The demo's dialogue step: a client of the DialogueService, as a shop's customer-service chat and a live room's
comment box would call it (the service runs its embedded default: no LM, answers extracted from the session's
knowledge with the MiniLM, cited, abstaining when the knowledge does not hold the answer).

1. Customer service: a session about a phone's product details; the customer asks its weight (the answer streams
   in pieces, with the product sheet cited) and then whether it is waterproof, which the sheet does not say (the
   service says so, citing nothing).
2. Quick comments: a session about a slice of a cooking live stream (its transcript and viewers' comments); the
   service proposes 4 ranked comments (relevance to the slice traded against repetition).
Checks: the answer holds the sheet's weight and cites it; the second reply cites nothing; 4 distinct candidates
ranked by score; every reply ends with FINISH_REASON_STOP.
"""

from __future__ import annotations

import grpc
from kmono.dialogue.v1 import dialogue_pb2, dialogue_pb2_grpc

PRODUCT = dialogue_pb2.Attachment(
    attachment_id="aurora-x200",
    document=dialogue_pb2.KnowledgeDocument(
        title="Aurora X200 phone",
        text="Battery: 5000 mAh\nWeight: 187 g\nScreen: 6.7 inch OLED\nPrice: 2999 yuan\n"
        "Does it come with a charger? Yes, a 67 W charger is in the box.",
    ),
)
LIVE_SLICE = dialogue_pb2.Attachment(
    attachment_id="dumpling-live-0815",
    live_stream=dialogue_pb2.LiveStreamRef(stream_id="live-42", author_id="chef-mei"),
    caption="Dumpling night live",
    transcript="Tonight we fold pork and chive dumplings. The dough rests for twenty minutes. "
    "Pinch the edges tightly so they do not burst in the pot.",
    comments=["these dumplings look amazing", "how long does the dough rest?", "pinch tighter!",
              "chive and pork is the best filling", "hello from Berlin", "my grandma folds them like that"],
)  # fmt: skip
QUESTIONS = ("How heavy is the Aurora X200?", "Is the Aurora X200 waterproof?")
COMMENTS = 4


def chat(stub, **fields) -> tuple[str, dialogue_pb2.ChatResponse, int]:
    """(reply text, last message, number of messages) of one streamed Chat."""
    text, last, count = "", None, 0
    for message in stub.Chat(dialogue_pb2.ChatRequest(**fields), timeout=60):
        text += message.text_delta
        last, count = message, count + 1
    return text, last, count


def run_dialogue_calls(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = dialogue_pb2_grpc.DialogueServiceStub(channel)
        shop = stub.CreateSession(
            dialogue_pb2.CreateSessionRequest(
                user_id="customer-7", attachments=[PRODUCT], topic="the Aurora X200"
            ),
            timeout=30,
        ).session
        print(f"dialogue: customer service over {PRODUCT.document.title!r} (session {shop.session_id[:8]})")
        (answer, answered, _), (unknown, abstained, _) = (
            chat(stub, session_id=shop.session_id, text=question) for question in QUESTIONS
        )
        for question, text, last in ((QUESTIONS[0], answer, answered), (QUESTIONS[1], unknown, abstained)):
            print(f"  customer: {question}\n  service:  {text}")
            for citation in last.citations:
                print(f"            cited: {citation.title} ({citation.source_id}): {citation.snippet}")
        live = stub.CreateSession(
            dialogue_pb2.CreateSessionRequest(
                user_id="viewer-3",
                attachments=[LIVE_SLICE],
                default_mode=dialogue_pb2.DIALOGUE_MODE_QUICK_COMMENT,
            ),
            timeout=30,
        ).session
        first, comments, _ = chat(
            stub, session_id=live.session_id, text="suggest comments", candidate_count=COMMENTS
        )
        print(f"dialogue: quick comments for the live slice {LIVE_SLICE.caption!r}")
        for rank, c in enumerate(comments.comment_candidates, 1):
            print(f"  {rank}. {c.text:40s} relevance {c.relevance:.2f}  score {c.score:.2f}")
    stop = dialogue_pb2.FINISH_REASON_STOP
    candidates = list(comments.comment_candidates)
    scores = [c.score for c in candidates]
    return (
        "187 g" in answer
        and [c.source_id for c in answered.citations] == [PRODUCT.attachment_id]
        and not abstained.citations
        and len({c.text for c in candidates}) == COMMENTS
        and scores == sorted(scores, reverse=True)
        and first == candidates[0].text
        and answered.finish_reason == abstained.finish_reason == comments.finish_reason == stop
    )
