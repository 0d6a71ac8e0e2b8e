"""The knowledge-grounded Q&A set the project writes: products and live streams, English and Chinese.

    sessions = qa_sessions("dev", seed=0, num_sessions=20)      # QASession: attachments + QAItems

Each session is in one language and holds what a shop's customer-service chat would: two products' spec sheets
("key: value" lines, five of the twelve attributes below, a FAQ pair), the store's shipping and return policy
(prose), and a live stream (timestamped transcript with filler talk, a caption, viewer comments, some of which
repeat a user's question). Questions are drawn from templates by a seeded numpy Generator:
- answerable: a product attribute the sheet states, the FAQ, a policy sentence, a stream fact (price today,
  units left, the lucky-draw time, the caption's discount); the question is a paraphrase (a template for each
  attribute that mostly avoids the key's own words: "How heavy is..." for "Weight");
- unanswerable: an attribute the product's sheet does *not* state (the other seven), a policy the store does
  not write down, a stream detail never said.
The gold answer is the stated value ("180 g", "3 business days", "99元") and its source attachment.

Splits (our choice): "dev" calibrates the answerer's threshold; "test" is held out. They differ in seed stream
(the split's name is part of the seed), in brands (disjoint brand pools, so no product name is shared) and in
values (drawn afresh). The templates are the project's, written before measuring and not tuned to the
answerer: paraphrases are what a shopper would type.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from generation.dialogue.types import Attachment, AttachmentKind

SPLITS = ("dev", "test")
LANGUAGES = ("en", "zh")
DEV_SEEDS = (0, 1, 2)
TEST_SEEDS = (100, 101, 102)
FACTS_PER_PRODUCT = 5


@dataclass(frozen=True)
class QAItem:
    question: str
    language: str
    answerable: bool
    answer: str = ""
    source_id: str = ""
    category: str = ""
    """product (a spec fact), faq, policy or stream."""


@dataclass(frozen=True)
class QASession:
    session_id: str
    language: str
    attachments: tuple[Attachment, ...]
    items: tuple[QAItem, ...]


@dataclass(frozen=True)
class Attribute:
    """A product attribute: the sheet's key per language, a value maker (rng -> (en, zh)), paraphrased questions."""

    name: str
    key: dict[str, str]
    questions: dict[str, tuple[str, ...]]


def _value(name: str, rng: np.random.Generator) -> dict[str, str]:
    """A random value of an attribute, written the way a spec sheet writes it in each language."""
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    if name == "weight":
        n = int(rng.integers(8, 60)) * 10
        return {"en": f"{n} g", "zh": f"{n}克"}
    if name == "price":
        n = int(rng.integers(5, 90)) * 10 - 1
        return {"en": f"{n} yuan", "zh": f"{n}元"}
    if name == "colors":
        a, b = rng.choice(len(COLORS), size=2, replace=False)
        return {"en": f"{COLORS[a][0]} and {COLORS[b][0]}", "zh": f"{COLORS[a][1]}和{COLORS[b][1]}"}
    if name == "warranty":
        n = int(rng.integers(1, 4))
        return {"en": f"{n} years" if n > 1 else "1 year", "zh": f"{n}年"}
    if name == "material":
        m = pick(MATERIALS)
        return {"en": m[0], "zh": m[1]}
    if name == "size":
        a, b, c = (int(x) for x in rng.integers(3, 40, size=3))
        return {"en": f"{a} x {b} x {c} cm", "zh": f"{a}×{b}×{c}厘米"}
    if name == "origin":
        m = pick(COUNTRIES)
        return {"en": m[0], "zh": m[1]}
    if name == "water":
        n = int(rng.integers(4, 9))
        return {"en": f"IPX{n}", "zh": f"IPX{n}"}
    if name == "battery":
        n = int(rng.integers(6, 60))
        return {"en": f"{n} hours", "zh": f"{n}小时"}
    if name == "charging":
        n = int(rng.integers(2, 9)) * 15
        return {"en": f"{n} minutes", "zh": f"{n}分钟"}
    if name == "power":
        n = int(rng.integers(2, 40)) * 50
        return {"en": f"{n} W", "zh": f"{n}瓦"}
    if name == "capacity":
        n = int(rng.integers(3, 30)) / 10
        return {"en": f"{n:g} L", "zh": f"{n:g}升"}
    raise ValueError(f"unknown attribute {name!r}")


ATTRIBUTES = (
    Attribute(
        "weight",
        {"en": "Weight", "zh": "重量"},
        {
            "en": (
                "How heavy is the {name}?",
                "What does the {name} weigh?",
                "Is the {name} light? How many grams?",
            ),
            "zh": ("{name}有多重？", "{name}几克？", "{name}拿着沉吗，多少克？"),
        },
    ),
    Attribute(
        "price",
        {"en": "Price", "zh": "价格"},
        {
            "en": (
                "How much does the {name} cost?",
                "What will the {name} set me back?",
                "How much is the {name}?",
            ),
            "zh": ("{name}卖多少钱？", "{name}要多少钱？", "买一个{name}得花多少？"),
        },
    ),
    Attribute(
        "colors",
        {"en": "Colors", "zh": "颜色"},
        {
            "en": ("What colours does the {name} come in?", "Which shades can I pick for the {name}?"),
            "zh": ("{name}有哪些颜色可选？", "{name}有几种配色？"),
        },
    ),
    Attribute(
        "warranty",
        {"en": "Warranty", "zh": "保修"},
        {
            "en": ("How long is the {name} covered if it breaks?", "What guarantee comes with the {name}?"),
            "zh": ("{name}坏了保多久？", "{name}的质保期多长？"),
        },
    ),
    Attribute(
        "material",
        {"en": "Material", "zh": "材质"},
        {
            "en": ("What is the {name} made of?", "What is the {name}'s body built from?"),
            "zh": ("{name}是用什么做的？", "{name}用的什么料子？"),
        },
    ),
    Attribute(
        "size",
        {"en": "Dimensions", "zh": "尺寸"},
        {
            "en": ("How big is the {name}?", "What are the measurements of the {name}?"),
            "zh": ("{name}有多大？", "{name}的大小是多少？"),
        },
    ),
    Attribute(
        "origin",
        {"en": "Made in", "zh": "产地"},
        {
            "en": ("Where is the {name} manufactured?", "Which country produces the {name}?"),
            "zh": ("{name}是哪里生产的？", "{name}是哪个国家造的？"),
        },
    ),
    Attribute(
        "water",
        {"en": "Water resistance", "zh": "防水等级"},
        {
            "en": ("Can the {name} get wet?", "How waterproof is the {name}?"),
            "zh": ("{name}能沾水吗？", "{name}防水怎么样？"),
        },
    ),
    Attribute(
        "battery",
        {"en": "Battery life", "zh": "续航"},
        {
            "en": (
                "How long does the {name} last on one charge?",
                "How many hours can I use the {name} unplugged?",
            ),
            "zh": ("{name}充一次电能用多久？", "{name}电池能撑几个小时？"),
        },
    ),
    Attribute(
        "charging",
        {"en": "Charging time", "zh": "充电时间"},
        {
            "en": ("How long does it take to recharge the {name}?", "How fast does the {name} charge up?"),
            "zh": ("{name}充满电要多久？", "{name}多长时间能充满？"),
        },
    ),
    Attribute(
        "power",
        {"en": "Power", "zh": "功率"},
        {
            "en": ("How many watts does the {name} draw?", "How powerful is the {name}?"),
            "zh": ("{name}功率多大？", "{name}是多少瓦的？"),
        },
    ),
    Attribute(
        "capacity",
        {"en": "Capacity", "zh": "容量"},
        {
            "en": ("How much can the {name} hold?", "What volume does the {name} take?"),
            "zh": ("{name}能装多少？", "{name}容量有多大？"),
        },
    ),
)
COLORS = (
    ("black", "黑色"),
    ("white", "白色"),
    ("blue", "蓝色"),
    ("red", "红色"),
    ("green", "绿色"),
    ("grey", "灰色"),
)
MATERIALS = (
    ("aluminium", "铝合金"),
    ("stainless steel", "不锈钢"),
    ("ABS plastic", "ABS塑料"),
    ("nylon", "尼龙"),
)
COUNTRIES = (
    ("Vietnam", "越南"),
    ("China", "中国"),
    ("Germany", "德国"),
    ("Japan", "日本"),
    ("Mexico", "墨西哥"),
)
NOUNS = (
    ("earbuds", "耳机"),
    ("kettle", "电水壶"),
    ("backpack", "双肩包"),
    ("phone", "手机"),
    ("blender", "料理机"),
    ("desk lamp", "台灯"),
    ("smartwatch", "智能手表"),
    ("hair dryer", "吹风机"),
)
BRANDS = {
    "dev": (
        ("Aurora", "极光"),
        ("Nimbus", "云帆"),
        ("Zephyr", "清风"),
        ("Vertex", "峰顶"),
        ("Lumen", "流明"),
    ),
    "test": (
        ("Solace", "晨曦"),
        ("Cobalt", "海蓝"),
        ("Juniper", "松柏"),
        ("Quasar", "星河"),
        ("Ember", "余烬"),
    ),
}
STREAM_ITEMS = (
    ("lipstick", "口红"),
    ("face cream", "面霜"),
    ("walnut snacks", "核桃零食"),
    ("silk scarf", "丝巾"),
)
STREAMERS = {"dev": (("Lily", "小丽"), ("Max", "大明")), "test": (("Nora", "小诺"), ("Leo", "阿乐"))}

FAQS = (
    (
        {
            "en": "Does the {name} come with a charger? Yes, a {v} charger is in the box.",
            "zh": "{name}送充电器吗？送的，盒子里有一个{v}充电器。",
        },
        lambda rng: {"en": f"{int(rng.integers(2, 13)) * 5} W", "zh": f"{int(rng.integers(2, 13)) * 5}W"},
        {"en": "Is a charger included when I buy the {name}?", "zh": "买{name}附带充电头吗？"},
    ),
    (
        {
            "en": "Is there a student discount on the {name}? Yes, students get {v} off.",
            "zh": "{name}有学生优惠吗？有的，学生立减{v}。",
        },
        lambda rng: {"en": f"{int(rng.integers(1, 6)) * 5}%", "zh": f"{int(rng.integers(1, 6)) * 5}%"},
        {"en": "Do students pay less for the {name}?", "zh": "学生买{name}能便宜吗？"},
    ),
)
POLICY = (
    # (sentence template, value maker, question)
    (
        {"en": "Orders ship within {v} of payment.", "zh": "付款后{v}内发货。"},
        lambda rng: (lambda n: {"en": f"{n} business days", "zh": f"{n}个工作日"})(int(rng.integers(1, 6))),
        {"en": "How soon will my order be sent out?", "zh": "下单以后多久能寄出？"},
    ),
    (
        {
            "en": "Unused items can be returned within {v} of delivery.",
            "zh": "未使用的商品签收后{v}内可以退货。",
        },
        lambda rng: (lambda n: {"en": f"{n} days", "zh": f"{n}天"})(int(rng.choice([7, 14, 15, 30]))),
        {"en": "How long do I have to send something back?", "zh": "东西不想要了，多长时间内能退？"},
    ),
    (
        {"en": "Delivery is free on orders over {v}.", "zh": "订单满{v}包邮。"},
        lambda rng: (lambda n: {"en": f"{n} yuan", "zh": f"{n}元"})(int(rng.integers(5, 30)) * 10),
        {"en": "How much do I need to spend to avoid paying for shipping?", "zh": "买多少钱可以免运费？"},
    ),
)
POLICY_UNANSWERABLE = {
    "en": ("Can I pay in instalments?", "Do you offer gift wrapping?", "Which courier do you use?"),
    "zh": ("可以分期付款吗？", "能帮忙包装成礼物吗？", "你们用哪家快递？"),
}
STREAM_FACTS = (
    (
        {
            "en": "The {item} is only {v} today, a special price for this stream.",
            "zh": "今天{item}只要{v}，直播间专属价。",
        },
        lambda rng: (lambda n: {"en": f"{n} yuan", "zh": f"{n}元"})(int(rng.integers(3, 30)) * 10 - 1),
        {"en": "What does the {item} cost in the live stream right now?", "zh": "直播间里{item}现在卖多少？"},
    ),
    (
        {"en": "We only have {v} left, so be quick.", "zh": "现在只剩{v}了，手慢无。"},
        lambda rng: (lambda n: {"en": f"{n} sets", "zh": f"{n}套"})(int(rng.integers(20, 300))),
        {"en": "How many of the {item} are still in stock?", "zh": "{item}库存还有几套？"},
    ),
    (
        {"en": "The lucky draw starts at {v} tonight.", "zh": "今晚{v}开始抽奖。"},
        lambda rng: (lambda n: {"en": f"{n} o'clock", "zh": f"{n}点"})(int(rng.integers(8, 12))),
        {"en": "When is the giveaway happening?", "zh": "什么时候抽奖呀？"},
    ),
)
STREAM_UNANSWERABLE = {
    "en": ("How tall is the host?", "What is the shelf life of the {item}?", "Does the host ship overseas?"),
    "zh": ("主播多高？", "{item}保质期多久？", "主播发海外吗？"),
}
STREAM_FILLER = {
    "en": (
        "Welcome everyone, remember to follow the channel!",
        "Let me show you the texture up close.",
        "Thanks for the gifts, you are all amazing!",
        "Okay, next I will try it on for you.",
    ),
    "zh": (
        "欢迎新来的朋友，记得点个关注！",
        "来，给大家近距离看看质地。",
        "谢谢大家送的礼物，爱你们！",
        "好，接下来我给大家试一下。",
    ),
}
COMMENTS = {
    "en": ("so cheap!!", "666", "love it", "the host is so funny"),
    "zh": ("好便宜！", "666", "爱了爱了", "主播好有趣"),
}


def qa_sessions(split: str, seed: int, num_sessions: int) -> list[QASession]:
    """`num_sessions` sessions of the split, alternating English and Chinese, all drawn from (split, seed)."""
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    rng = np.random.default_rng([SPLITS.index(split), seed])
    return [_session(split, f"{split}-{seed}-{n}", LANGUAGES[n % 2], rng) for n in range(num_sessions)]


def _session(split: str, session_id: str, lang: str, rng: np.random.Generator) -> QASession:
    attachments: list[Attachment] = []
    items: list[QAItem] = []
    brands = rng.choice(len(BRANDS[split]), size=2, replace=False)
    nouns = rng.choice(len(NOUNS), size=2, replace=False)
    for i, (b, m) in enumerate(zip(brands, nouns, strict=True)):
        name = _product_name(
            BRANDS[split][b][LANGUAGES.index(lang)], NOUNS[m][LANGUAGES.index(lang)], lang, rng
        )
        doc, doc_items = _product(f"{session_id}-product{i}", name, lang, rng)
        attachments.append(doc)
        items += doc_items
    policy, policy_items = _policy(f"{session_id}-policy", lang, rng)
    stream, stream_items = _stream(split, f"{session_id}-live", lang, rng)
    attachments += [policy, stream]
    items += policy_items + stream_items
    order = rng.permutation(len(items))
    return QASession(session_id, lang, tuple(attachments), tuple(items[i] for i in order))


def _product_name(brand: str, noun: str, lang: str, rng: np.random.Generator) -> str:
    model = f"{'XSPQ'[int(rng.integers(4))]}{int(rng.integers(2, 10))}"
    return f"{brand} {model} {noun}" if lang == "en" else f"{brand}{model}{noun}"


def _pick(options, rng: np.random.Generator):
    return options[int(rng.integers(len(options)))]


def _product(
    source_id: str, name: str, lang: str, rng: np.random.Generator
) -> tuple[Attachment, list[QAItem]]:
    chosen = rng.choice(len(ATTRIBUTES), size=FACTS_PER_PRODUCT, replace=False)
    stated = [ATTRIBUTES[i] for i in chosen]
    values = [_value(a.name, rng)[lang] for a in stated]
    sep = ": " if lang == "en" else "："
    lines = [f"{a.key[lang]}{sep}{v}" for a, v in zip(stated, values, strict=True)]
    faq_template, faq_value, faq_question = FAQS[int(rng.integers(len(FAQS)))]
    faq_v = faq_value(rng)[lang]
    lines.append(faq_template[lang].format(name=name, v=faq_v))
    document = Attachment(source_id, AttachmentKind.DOCUMENT, title=name, text="\n".join(lines))
    items = [
        QAItem(_pick(a.questions[lang], rng).format(name=name), lang, True, v, source_id, "product")
        for a, v in list(zip(stated, values, strict=True))[:2]
    ]
    items.append(QAItem(faq_question[lang].format(name=name), lang, True, faq_v, source_id, "faq"))
    missing = ATTRIBUTES[int(rng.choice([i for i in range(len(ATTRIBUTES)) if i not in chosen]))]
    items.append(
        QAItem(_pick(missing.questions[lang], rng).format(name=name), lang, False, category="product")
    )
    return document, items


def _policy(source_id: str, lang: str, rng: np.random.Generator) -> tuple[Attachment, list[QAItem]]:
    sentences, items = [], []
    asked = int(rng.integers(len(POLICY)))
    for n, (template, value, question) in enumerate(POLICY):
        v = value(rng)[lang]
        sentences.append(template[lang].format(v=v))
        if n == asked:
            items.append(QAItem(question[lang], lang, True, v, source_id, "policy"))
    items.append(QAItem(_pick(POLICY_UNANSWERABLE[lang], rng), lang, False, category="policy"))
    title = "Shipping and returns" if lang == "en" else "发货与售后"
    joiner = " " if lang == "en" else ""
    return Attachment(source_id, AttachmentKind.DOCUMENT, title=title, text=joiner.join(sentences)), items


def _stream(
    split: str, source_id: str, lang: str, rng: np.random.Generator
) -> tuple[Attachment, list[QAItem]]:
    li = LANGUAGES.index(lang)
    item = STREAM_ITEMS[int(rng.integers(len(STREAM_ITEMS)))][li]
    host = STREAMERS[split][int(rng.integers(len(STREAMERS[split])))][li]
    lines: list[str] = list(STREAM_FILLER[lang])
    items: list[QAItem] = []
    asked = rng.choice(len(STREAM_FACTS), size=2, replace=False)
    for n, (template, value, question) in enumerate(STREAM_FACTS):
        v = value(rng)[lang]
        lines.insert(int(rng.integers(len(lines) + 1)), template[lang].format(item=item, v=v))
        if n in asked:
            items.append(QAItem(question[lang].format(item=item), lang, True, v, source_id, "stream"))
    stamped = "\n".join(f"[{2 * n:02d}:{int(rng.integers(60)):02d}] {line}" for n, line in enumerate(lines))
    discount = int(rng.integers(1, 6)) * 10
    caption, discount_v = (
        (f"Flash sale: {discount}% off everything", f"{discount}% off")
        if lang == "en"
        else (f"限时秒杀：全场立减{discount}%", f"{discount}%")
    )
    items.append(
        QAItem(
            "How big is the discount in this stream?" if lang == "en" else "这场直播优惠多少？",
            lang,
            True,
            discount_v,
            source_id,
            "stream",
        )
    )
    items.append(
        QAItem(_pick(STREAM_UNANSWERABLE[lang], rng).format(item=item), lang, False, category="stream")
    )
    # Viewers ask what users ask: one comment repeats an answerable question (a trap for echoing retrieval).
    echo = items[int(rng.integers(len(items) - 1))].question
    comments = (*COMMENTS[lang][:2], echo, *COMMENTS[lang][2:])
    title = f"{host}'s live: {item}" if lang == "en" else f"{host}的直播间：{item}"
    start = float(rng.integers(1_700_000_000, 1_800_000_000))
    stream = Attachment(
        source_id,
        AttachmentKind.LIVE_STREAM,
        title=title,
        caption=caption,
        transcript=stamped,
        comments=comments,
        stream_id=f"{source_id}-stream",
        start=start,
        end=start + 2 * 60 * len(lines),
    )
    return stream, items
