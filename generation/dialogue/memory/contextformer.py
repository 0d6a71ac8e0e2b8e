"""ContextQFormer's memory reader (arXiv 2505.23121) in front of any Hugging Face causal LM.

Each earlier turn becomes one vector in a fixed-length FIFO memory M (`FifoMemory` at serving time); learnable
queries Q read it,

    H0 = LN(Q + MHA(Q, Q, Q))
    H1 = LN(H0 + MHA(H0, M·W_k, M·W_v))

and H1, projected to the LM's hidden size, is PREPENDED to the LM's input embeddings (`inputs_embeds`), so a
fact that fell out of the LM's context window still reaches it. `ContextformerLM` wraps any causal LM that has
`get_input_embeddings()` and takes `inputs_embeds`/`position_ids` (Llama, GPT-2, Gemma); the LM is frozen, or
adapted with peft LoRA (`ContextformerConfig.lora_rank > 0`); `lm.py` has the recipe that makes it remember.

Where the paper is silent, our choices:
- **A turn's embedding** is computed by a small trainable `TurnEncoder` from the LM's own (frozen) input
  embeddings of the turn's first `max_turn_tokens` tokens, plus learned token positions, one self-attention
  layer, and attention pooling with `turn_pool_queries` learned queries, concatenated and projected to
  `memory_dim`. **Pooling happens there**, once per turn, so a turn costs one slot whatever its length. We do not
  use a sentence encoder (MiniLM) for M: a fact's value ("4821", a name) must come back exactly, and a
  general-purpose sentence vector does not keep digits in order (the engine may still keep MiniLM vectors beside
  M to report which memories a reply used).
- **Slot positions**: a learned embedding per slot is added to M before W_k (keys only), and a learned
  query-by-slot bias on the cross-attention scores starts at `SLOT_BIAS` on the diagonal, so with
  `num_queries >= memory_slots` query i starts out reading slot i (the i-th oldest remembered turn, FifoMemory's
  order). Without it the queries started alike, all read the same average of M, and no turn's value reached
  the prefix (measured: the prefix was the same for every query). W_v and W_o start orthogonal, so the read is
  as large as LN(H0) in H1 (PyTorch's default init left it a ninth of it).
- **Empty slots** are masked out of the cross-attention; a row with no memory at all gets no cross-attention
  (its H1 is LN(H0)) and, in `ContextformerLM`, its prefix is masked out of the LM's attention, so an empty
  memory leaves the LM's output unchanged (tested).
- **Positions of the prefix**: the prefix tokens all take position 0 and the text keeps positions 0..T-1, the
  same as without memory, so the LM sees its window exactly as it would alone.
- **Projection to the LM: soft tokens.** H1 is projected to logits over the LM's vocabulary and each prefix
  position is the softmax mixture of the LM's own input token embeddings (`token_logits`, then `@ E`). The
  prefix so lies where the LM's layers were trained to read, and a remembered fact can be written as the
  tokens that state it (training's fact-token loss, `lm.memory_losses`, asks query i for the key and the value
  of the fact in slot i). A linear projection to the hidden size (the first version) carried the value in a
  direction the LM never learned to read: the answer loss stayed at chance even with the whole LM trainable,
  while an oracle prefix (the fact turn's token embeddings) through the same path was learned in 150 steps. The
  cost is a (hidden, vocabulary) matrix: 23 k parameters for the recall task's LM, 34 M for Gemma 3's 262 k
  vocabulary (restrict it to a sub-vocabulary there).

Only the trainable parts are saved (`memory.safetensors`: encoder, reader, LoRA) with `memory_config.json`,
which names the LM's directory (relative to the saved folder when it lies inside it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

logger = logging.getLogger(__name__)

CONFIG_NAME = "memory_config.json"
WEIGHTS_NAME = "memory.safetensors"
LORA_PREFIX = "lora."
IGNORE_INDEX = -100
SLOT_BIAS = 8.0


@dataclass(frozen=True)
class ContextformerConfig:
    """Sizes of the memory path. `lm_path` is the LM's directory (or hub id); `window_tokens` the K last tokens
    of the history the LM is shown beside the memory (the engine's window; 0 = the LM's own limit)."""

    lm_path: str = ""
    memory_slots: int = 16
    memory_dim: int = 128
    num_queries: int = 16
    hidden_size: int = 128
    num_heads: int = 4
    max_turn_tokens: int = 16
    turn_pool_queries: int = 4
    window_tokens: int = 32
    lora_rank: int = 0
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ContextformerConfig:
        data = json.loads(text)
        if data.get("lora_targets") is not None:
            data["lora_targets"] = tuple(data["lora_targets"])
        return cls(**data)


class TurnEncoder(nn.Module):
    """One vector per turn from the LM's token embeddings of it: (N, L, d_lm) + mask (N, L) -> (N, memory_dim)."""

    def __init__(self, lm_hidden: int, config: ContextformerConfig) -> None:
        super().__init__()
        self.positions = nn.Embedding(config.max_turn_tokens, lm_hidden)
        # Small positions: N(0, 1) would outweigh the LM's token embeddings (norm about 1) a hundredfold and the
        # turn's words would hardly reach its vector (measured: a probe could not read the value back).
        nn.init.normal_(self.positions.weight, std=0.02)
        heads = _heads_for(lm_hidden, config.num_heads)
        self.layer = nn.TransformerEncoderLayer(
            lm_hidden, heads, dim_feedforward=2 * lm_hidden, dropout=0.0, batch_first=True, norm_first=True
        )
        self.pool_queries = nn.Parameter(torch.randn(config.turn_pool_queries, lm_hidden) * 0.02)
        self.pool = nn.MultiheadAttention(lm_hidden, heads, batch_first=True)
        self.out = nn.Linear(config.turn_pool_queries * lm_hidden, config.memory_dim)
        self.norm = nn.LayerNorm(config.memory_dim)

    def forward(self, token_embeds: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        n, length, _ = token_embeds.shape
        # A turn with no tokens would leave a row with nothing to attend to: let it see its first (pad) position.
        token_mask = token_mask.clone()
        token_mask[:, 0] = True
        x = token_embeds + self.positions.weight[:length]  # (N, L, d)
        x = self.layer(x, src_key_padding_mask=~token_mask)  # (N, L, d)
        queries = self.pool_queries.expand(n, -1, -1)  # (N, P, d)
        pooled, _ = self.pool(queries, x, x, key_padding_mask=~token_mask, need_weights=False)  # (N, P, d)
        return self.norm(self.out(pooled.reshape(n, -1)))  # (N, memory_dim)


class Contextformer(nn.Module):
    """The query transformer over the memory: M (B, C, memory_dim) + mask (B, C) -> prefix (B, N_q, d_lm), each
    prefix position a soft token (a softmax mixture of the LM's token embeddings)."""

    def __init__(self, config: ContextformerConfig, vocab_size: int) -> None:
        super().__init__()
        d, self.num_heads = config.hidden_size, _heads_for(config.hidden_size, config.num_heads)
        self.queries = nn.Parameter(torch.randn(config.num_queries, d))
        self.self_attn = nn.MultiheadAttention(d, self.num_heads, batch_first=True)
        self.norm0 = nn.LayerNorm(d)
        self.slot_positions = nn.Parameter(torch.randn(config.memory_slots, config.memory_dim))
        # Query i starts out reading slot i (a learned bias on the cross-attention scores, initialised to
        # SLOT_BIAS on the diagonal): without it the queries started alike, read the same average of the
        # memory, and a turn's value never reached the prefix (measured: every query gave the same prefix).
        self.slot_bias = nn.Parameter(SLOT_BIAS * torch.eye(config.num_queries, config.memory_slots))
        self.w_q = nn.Linear(d, d)
        self.w_k = nn.Linear(config.memory_dim, d)
        self.w_v = nn.Linear(config.memory_dim, d)
        self.w_o = nn.Linear(d, d)
        self.norm1 = nn.LayerNorm(d)
        self.project = nn.Linear(d, vocab_size)
        # Norm-preserving value path: with PyTorch's default init, W_v and W_o each shrink their input about
        # threefold, so the read was a ninth of LN(H0)'s scale in H1 and the memory hardly changed the prefix
        # (measured: the prefix's spread across dialogues was a seventh of its spread across queries).
        for layer in (self.w_v, self.w_o):
            nn.init.orthogonal_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(
        self, memory: torch.Tensor, memory_mask: torch.Tensor, token_embeddings: torch.Tensor
    ) -> torch.Tensor:
        weights = self.token_logits(memory, memory_mask).softmax(dim=-1)  # (B, Nq, V)
        return weights @ token_embeddings  # (B, Nq, d_lm)

    def token_logits(self, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        """The soft tokens' logits over the LM's vocabulary: (B, Nq, V)."""
        batch, slots, _ = memory.shape
        q = self.queries.expand(batch, -1, -1)  # (B, Nq, d)
        h0 = self.norm0(q + self.self_attn(q, q, q, need_weights=False)[0])  # (B, Nq, d)
        keys = self.w_k(memory + self.slot_positions[:slots])  # (B, C, d)
        values = self.w_v(memory)  # (B, C, d)
        has_memory = memory_mask.any(dim=1)  # (B,)
        # Rows without memory attend to a dummy slot whose output is dropped below (no NaN from an empty softmax).
        attend = memory_mask.clone()
        attend[~has_memory, 0] = True
        scores_bias = self.slot_bias[:, :slots].masked_fill(~attend[:, None, :], float("-inf"))  # (B, Nq, C)
        read = self._cross_attention(self.w_q(h0), keys, values, scores_bias)  # (B, Nq, d)
        read = read * has_memory[:, None, None].to(read.dtype)
        h1 = self.norm1(h0 + self.w_o(read))  # (B, Nq, d)
        return self.project(h1)  # (B, Nq, V)

    def _cross_attention(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor
    ) -> torch.Tensor:
        batch, nq, d = q.shape
        split = lambda t: t.reshape(batch, t.shape[1], self.num_heads, d // self.num_heads).transpose(1, 2)  # noqa: E731
        out = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=bias[:, None])
        return out.transpose(1, 2).reshape(batch, nq, d)  # (B, Nq, d)


def _heads_for(width: int, wanted: int) -> int:
    """The largest head count <= `wanted` that divides `width`."""
    return max(h for h in range(1, wanted + 1) if width % h == 0)


class ContextformerLM(nn.Module):
    """A causal LM with the Contextformer memory prefix. Trainable: the turn encoder, the reader, LoRA (if any)."""

    def __init__(self, config: ContextformerConfig, lm: nn.Module, tokenizer=None) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        lm.requires_grad_(False)
        embeddings = lm.get_input_embeddings().weight
        lm_hidden = embeddings.shape[1]
        if config.lora_rank > 0:
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(
                r=config.lora_rank,
                lora_alpha=config.lora_alpha,
                lora_dropout=0.0,
                target_modules=list(config.lora_targets) if config.lora_targets else None,
            )
            lm = get_peft_model(lm, lora)
        self.lm = lm
        self.turn_encoder = TurnEncoder(lm_hidden, config)
        self.reader = Contextformer(config, vocab_size=embeddings.shape[0])

    # ---- loading and saving -------------------------------------------------------------------------------------

    @classmethod
    def from_config(cls, config: ContextformerConfig, *, seed: int = 0) -> ContextformerLM:
        """A fresh memory (initialised from `seed`) around the LM in `config.lm_path`."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        lm = AutoModelForCausalLM.from_pretrained(config.lm_path)
        tokenizer = AutoTokenizer.from_pretrained(config.lm_path)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return cls(config, lm, tokenizer)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> ContextformerLM:
        path = Path(path)
        config = ContextformerConfig.from_json((path / CONFIG_NAME).read_text())
        lm_path = path / config.lm_path
        if lm_path.exists():
            config = dataclasses.replace(config, lm_path=str(lm_path))
        model = cls.from_config(config)
        stored_config = ContextformerConfig.from_json((path / CONFIG_NAME).read_text())
        model.config = dataclasses.replace(model.config, lm_path=stored_config.lm_path)
        model.load_trainable_state(load_file(path / WEIGHTS_NAME))
        model.eval()
        return model

    def save_pretrained(self, path: str | Path, *, lm_path: str | None = None) -> None:
        """Write the trainable parts and the config; `lm_path` (default: the config's) is what the saved config
        names, so a folder holding its LM under `lm/` can say "lm" and move as a whole."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        config = dataclasses.replace(
            self.config, lm_path=lm_path if lm_path is not None else self.config.lm_path
        )
        (path / CONFIG_NAME).write_text(config.to_json() + "\n")
        save_file(
            {k: v.detach().contiguous() for k, v in self.trainable_state().items()}, path / WEIGHTS_NAME
        )

    def trainable_state(self) -> dict[str, torch.Tensor]:
        state = {f"turn_encoder.{k}": v for k, v in self.turn_encoder.state_dict().items()}
        state |= {f"reader.{k}": v for k, v in self.reader.state_dict().items()}
        if self.config.lora_rank > 0:
            from peft import get_peft_model_state_dict

            state |= {LORA_PREFIX + k: v for k, v in get_peft_model_state_dict(self.lm).items()}
        return state

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        self.turn_encoder.load_state_dict(
            {k[13:]: v for k, v in state.items() if k.startswith("turn_encoder.")}
        )
        self.reader.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("reader.")})
        lora = {k[len(LORA_PREFIX) :]: v for k, v in state.items() if k.startswith(LORA_PREFIX)}
        if lora:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.lm, lora)

    @contextlib.contextmanager
    def without_adapter(self):
        """Run the plain LM inside this block (LoRA adapters switched off; nothing to do when frozen)."""
        if self.config.lora_rank > 0:
            with self.lm.disable_adapter():
                yield
        else:
            yield

    # ---- the memory path --------------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.reader.queries.device

    def turn_token_ids(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (N, max_turn_tokens) of each turn's first tokens, right-padded with 0, and their mask."""
        length = self.config.max_turn_tokens
        ids = torch.zeros(len(texts), length, dtype=torch.long)
        mask = torch.zeros(len(texts), length, dtype=torch.bool)
        for i, text in enumerate(texts):
            tokens = self.tokenizer(text, add_special_tokens=False)["input_ids"][:length]
            ids[i, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            mask[i, : len(tokens)] = True
        return ids, mask

    def encode_turn_ids(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Memory vectors of turns given as token ids: (..., L) -> (..., memory_dim)."""
        shape = ids.shape[:-1]
        embeds = self.lm.get_input_embeddings()(ids.reshape(-1, ids.shape[-1]).to(self.device))
        vectors = self.turn_encoder(embeds, mask.reshape(-1, mask.shape[-1]).to(self.device))
        return vectors.reshape(*shape, -1)

    @torch.no_grad()
    def embed_turns(self, texts: list[str]) -> np.ndarray:
        """One memory vector per turn, for `FifoMemory(capacity=memory_slots, dim=memory_dim)`: (N, memory_dim)."""
        if not texts:
            return np.zeros((0, self.config.memory_dim), dtype=np.float32)
        return self.encode_turn_ids(*self.turn_token_ids(texts)).float().cpu().numpy()

    def prefix(self, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        """The prefix embeddings (B, N_q, d_lm) read from memory (B, C, memory_dim) with mask (B, C)."""
        embeddings = self.lm.get_input_embeddings().weight  # (V, d_lm)
        return self.reader(memory.to(self.device), memory_mask.to(self.device), embeddings)

    def _inputs(self, input_ids, attention_mask, memory, memory_mask):
        """inputs_embeds, attention mask and position ids of [prefix; text], or of the text alone without memory."""
        embeds = self.lm.get_input_embeddings()(input_ids)  # (B, T, d_lm)
        positions = (attention_mask.long().cumsum(dim=1) - 1).clamp(
            min=0
        )  # (B, T): left padding keeps 0..T-1
        if memory is None:
            return embeds, attention_mask, positions
        prefix = self.prefix(memory, memory_mask).to(embeds.dtype)  # (B, Nq, d_lm)
        prefix_mask = memory_mask.to(self.device).any(dim=1, keepdim=True).expand(-1, prefix.shape[1])
        embeds = torch.cat([prefix, embeds], dim=1)  # (B, Nq + T, d_lm)
        mask = torch.cat([prefix_mask.to(attention_mask.dtype), attention_mask], dim=1)
        positions = torch.cat([torch.zeros_like(prefix_mask, dtype=torch.long), positions], dim=1)
        return embeds, mask, positions

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        memory: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(loss, logits of the text positions (B, T, V)). `labels` (B, T) hold the text's own ids where the loss
        counts (the answer tokens) and IGNORE_INDEX elsewhere; they are shifted here."""
        input_ids = input_ids.to(self.device)
        attention_mask = (
            torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(self.device)
        )
        embeds, mask, positions = self._inputs(input_ids, attention_mask, memory, memory_mask)
        logits = self.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).logits
        logits = logits[:, -input_ids.shape[1] :]  # (B, T, V)
        loss = None
        if labels is not None:
            labels = labels.to(self.device)
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                labels[:, 1:].reshape(-1),
                ignore_index=IGNORE_INDEX,
            )
        return loss, logits

    @torch.no_grad()
    def generate(
        self,
        prompts: list[list[int]],
        memory: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        *,
        max_new_tokens: int = 8,
        eos_token_id: int | None = None,
    ) -> list[list[int]]:
        """Greedy continuations of token-id prompts (left-padded into one batch), with the memory prefix, through
        the LM's KV cache. Each stops after `eos_token_id` (not returned) or `max_new_tokens`."""
        eos = self.tokenizer.eos_token_id if eos_token_id is None else eos_token_id
        longest = max(len(p) for p in prompts)
        ids = torch.zeros(len(prompts), longest, dtype=torch.long, device=self.device)
        attention = torch.zeros_like(ids)
        for i, p in enumerate(prompts):
            ids[i, longest - len(p) :] = torch.tensor(p, dtype=torch.long)
            attention[i, longest - len(p) :] = 1
        embeds, mask, positions = self._inputs(ids, attention, memory, memory_mask)
        out = self.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True)
        next_positions = positions[:, -1:] + 1  # (B, 1)
        finished = torch.zeros(len(prompts), dtype=torch.bool, device=self.device)
        generated: list[list[int]] = [[] for _ in prompts]
        for _ in range(max_new_tokens):
            token = out.logits[:, -1].argmax(dim=-1)  # (B,)
            for i in (~finished).nonzero().flatten().tolist():
                if token[i] == eos:
                    finished[i] = True
                else:
                    generated[i].append(int(token[i]))
            if finished.all():
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            out = self.lm(
                input_ids=token[:, None],
                attention_mask=mask,
                position_ids=next_positions,
                past_key_values=out.past_key_values,
                use_cache=True,
            )
            next_positions = next_positions + 1
        return generated
