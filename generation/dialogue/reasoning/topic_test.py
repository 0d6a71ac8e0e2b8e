from generation.dialogue.reasoning.topic import TopicGuard

TOPIC = "the red lipstick sold in this live stream"


def test_an_off_topic_reply_is_flagged_and_an_on_topic_one_is_not(text_encoder):
    guard = TopicGuard(text_encoder)
    on = "Our lipstick comes in three shades of red and lasts eight hours."
    off = "The football match last night ended two to one."
    assert guard.on_topic(TOPIC, on) and not guard.on_topic(TOPIC, off)
    assert guard.similarity(TOPIC, on) > guard.threshold > guard.similarity(TOPIC, off)


def test_no_topic_never_drifts_and_the_threshold_decides(text_encoder):
    assert TopicGuard(text_encoder).on_topic("", "anything at all")
    assert TopicGuard(text_encoder, threshold=-1.0).on_topic(TOPIC, "The football match ended two to one.")
    assert not TopicGuard(text_encoder, threshold=0.99).on_topic(TOPIC, "The red lipstick is on sale.")


def test_steer_prompt_puts_the_topic_note_right_before_the_cue(text_encoder):
    prompt = "A helpful assistant.\nUser: who won the match?\nAssistant:"
    steered = TopicGuard(text_encoder).steer_prompt(prompt, TOPIC)
    assert steered.startswith("A helpful assistant.\nUser: who won the match?\n")
    assert steered.endswith(f"stays on the topic of the conversation: {TOPIC}.)\nAssistant:")
