import pytest

from generation.dialogue.knowledge.language import detect_language, is_cjk


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("How heavy is the Aurora X2?", "en"),
        ("这款耳机有多重？", "zh"),
        ("极光X2耳机有多重？", "zh"),
        ("请问 AirPods Pro 的价格", "zh"),
        ("このイヤホンの重さは？", "ja"),
        ("東京へ行きます", "ja"),
        ("이 이어폰 무게는?", "ko"),
        ("Сколько это стоит?", "ru"),
        ("123 ?!", ""),
        ("", ""),
        ("x", ""),
    ],
)
def test_language_by_script(text, language):
    assert detect_language(text) == language


def test_cjk_characters():
    assert all(is_cjk(c) for c in "中文かなカナ한글")
    assert not any(is_cjk(c) for c in "abc 123，。")
