"""Tiny real language models for tests: a random-initialised Llama with a real tokenizer, built offline in < 2 s.

    model_dir = tiny_causal_lm_dir(tmp_path / "lm")       # a normal HF directory: from_pretrained loads it
    gguf_path = tiny_gguf_file(model_dir, tmp_path / "lm.gguf")   # the same model as a GGUF (F32)
    vlm_dir = tiny_vision_language_dir(tmp_path / "vlm")         # a tiny Llava with its processor

The tokenizer is a byte-level BPE (GPT-2 style) trained on a few sentences, so every string round-trips through
encode/decode (multilingual text included) and the same vocabulary and merges can be written into a GGUF for
llama.cpp and for transformers' GGUF loader. The weights are random: replies are gibberish, but deterministic
under greedy decoding, which is what backend contract tests need.

    with openai_completions_server(ScriptedLM(["Paris"])) as server:   # an OpenAI-compatible server on loopback
        lm = OpenAICompatibleLM(server.base_url, "test-model")
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from generation.dialogue.backends.base import GenerationParams, LanguageModel

logger = logging.getLogger(__name__)

# Sizes small enough that building, saving and loading take well under a second.
TINY_HIDDEN = 32
TINY_LAYERS = 2
TINY_HEADS = 4
TINY_KV_HEADS = 2
TINY_INTERMEDIATE = 64
TINY_CONTEXT = 256
TINY_VOCAB = 400
BOS, EOS = "<s>", "</s>"
IMAGE_TOKEN = "<image>"

_CORPUS = [
    "The red lamp costs twenty dollars and ships in two days.",
    "Welcome to the live stream! Today we cook noodles with garlic and chili.",
    "Question: what colour is the sofa? Answer: the sofa is blue.",
    "User: hello there. Assistant: hi, how can I help you today?",
    "Quick comments: wow, so cute, I want one, where can I buy it?",
    "Le canapé est bleu. 这个沙发是蓝色的。",
]


def _train_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB,
        special_tokens=[BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS)


def tiny_causal_lm_dir(path: str | Path, *, seed: int = 0) -> Path:
    """Write a random-initialised tiny LlamaForCausalLM and its tokenizer to `path` (created) and return it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path = Path(path)
    tokenizer = _train_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=TINY_HIDDEN,
        intermediate_size=TINY_INTERMEDIATE,
        num_hidden_layers=TINY_LAYERS,
        num_attention_heads=TINY_HEADS,
        num_key_value_heads=TINY_KV_HEADS,
        max_position_embeddings=TINY_CONTEXT,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    # Larger-than-default output weights so greedy replies vary with the prompt instead of repeating one token.
    with torch.no_grad():
        model.lm_head.weight.normal_(0.0, 0.5)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_vision_language_dir(path: str | Path, *, seed: int = 0) -> Path:
    """Write a random-initialised tiny Llava (a 1-layer CLIP vision tower on 16x16 images, the tiny Llama as its
    language model) with a `LlavaProcessor` to `path`; prompts mark the image with `<image>`."""
    import torch
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    path = Path(path)
    tokenizer = _train_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    # No torchvision here (see TOOLCHAIN.md): the PIL image processor.
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1,
    )
    vision = CLIPVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=16,
        patch_size=8,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=TINY_HIDDEN,
        intermediate_size=TINY_INTERMEDIATE,
        num_hidden_layers=TINY_LAYERS,
        num_attention_heads=TINY_HEADS,
        num_key_value_heads=TINY_KV_HEADS,
        max_position_embeddings=TINY_CONTEXT,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_layer=-1,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    with torch.no_grad():
        model.lm_head.weight.normal_(0.0, 0.5)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def _permute_for_ggml(weight: np.ndarray, n_head: int) -> np.ndarray:
    """HF stores Llama's q/k rows in rotate-half order; GGML wants them interleaved (as convert_hf_to_gguf.py)."""
    rows = weight.shape[0]
    return (
        weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)
    )


def tiny_gguf_file(model_dir: str | Path, path: str | Path) -> Path:
    """Write the tiny Llama at `model_dir` (from `tiny_causal_lm_dir`) as an F32 GGUF that llama.cpp and
    transformers' `gguf_file=` both load: the tensors renamed and q/k permuted as llama.cpp's converter does,
    the byte-level BPE vocabulary and merges as a `gpt2` tokenizer."""
    import gguf
    from safetensors.numpy import load_file

    model_dir, path = Path(model_dir), Path(path)
    config = json.loads((model_dir / "config.json").read_text())
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text())
    weights = load_file(str(model_dir / "model.safetensors"))
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("kmono-tiny-llama")
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(config["hidden_size"] // heads)
    writer.add_rope_freq_base(float(config.get("rope_theta") or config["rope_parameters"]["rope_theta"]))
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    vocab = sorted(tokenizer["model"]["vocab"].items(), key=lambda item: item[1])
    special = {token["content"] for token in tokenizer["added_tokens"]}
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([token for token, _ in vocab])
    writer.add_token_types(
        [gguf.TokenType.CONTROL if token in special else gguf.TokenType.NORMAL for token, _ in vocab]
    )
    merges = tokenizer["model"]["merges"]
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    writer.add_bos_token_id(config["bos_token_id"])
    writer.add_eos_token_id(config["eos_token_id"])
    writer.add_add_bos_token(False)

    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    per_layer = {
        "input_layernorm": "attn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "post_attention_layernorm": "ffn_norm",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    for layer in range(config["num_hidden_layers"]):
        for hf, gg in per_layer.items():
            names[f"model.layers.{layer}.{hf}.weight"] = f"blk.{layer}.{gg}.weight"
    for hf_name, gguf_name in names.items():
        tensor = weights[hf_name].astype(np.float32)
        if hf_name.endswith("q_proj.weight"):
            tensor = _permute_for_ggml(tensor, heads)
        elif hf_name.endswith("k_proj.weight"):
            tensor = _permute_for_ggml(tensor, kv_heads)
        writer.add_tensor(gguf_name, tensor)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


class _CompletionsHandler(BaseHTTPRequestHandler):
    """`POST /v1/completions` with `stream: true`, answered as OpenAI's server-sent events from `server.lm`."""

    protocol_version = "HTTP/1.1"
    server: _CompletionsServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        logger.debug("test server: " + format, *args)

    def _error(self, status: int, message: str) -> None:
        body = json.dumps({"error": {"message": message, "code": status}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _chunk(self, payload: str) -> None:
        data = f"data: {payload}\n\n".encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        self.server.requests.append(body)
        self.server.headers.append(dict(self.headers))
        if self.path != "/v1/completions":
            return self._error(404, f"no route {self.path}")
        if body.get("model") != self.server.model:
            return self._error(404, f"model {body.get('model')!r} does not exist")
        params = GenerationParams(
            max_new_tokens=int(body.get("max_tokens", 16)),
            temperature=float(body.get("temperature", 1.0)),
            top_p=float(body.get("top_p", 1.0)),
            stop=tuple(body.get("stop") or ()),
            seed=body.get("seed"),
        )
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            for piece in self.server.lm.stream(body.get("prompt", ""), params):
                self._chunk(
                    json.dumps({"object": "text_completion", "choices": [{"index": 0, "text": piece}]})
                )
            self._chunk("[DONE]")
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.server.disconnects += 1  # the client closed the connection mid-stream (cancel)


class _CompletionsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, lm: LanguageModel, model: str) -> None:
        super().__init__(("127.0.0.1", 0), _CompletionsHandler)
        self.lm = lm
        self.model = model
        self.requests: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self.disconnects = 0

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that cancels closes its socket at any moment: expected here, not worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            logger.debug("test server: client %s went away", client_address)
        else:
            super().handle_error(request, client_address)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


@contextlib.contextmanager
def openai_completions_server(lm: LanguageModel, model: str = "test-model") -> Iterator[_CompletionsServer]:
    """A local OpenAI-compatible completions server on 127.0.0.1 that streams `lm`'s replies; yields the server
    (`base_url`, the JSON `requests` and their `headers`, `disconnects` seen mid-stream). Shut down on exit."""
    server = _CompletionsServer(lm, model)
    # A short poll interval: shutdown() waits up to one interval, and every test stops a server.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="openai-test-server", daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
