"""Training configuration and named recipes.

`TrainConfig` holds every knob of `generation.mvideo.training.trainer.train`; a recipe is a named
`TrainConfig` (plus, for the shapes world, the model to build from scratch). The command line
(`kmono mvideo train --recipe NAME --flag value ...`) starts from the recipe and overrides single fields.

Recipes:

- `shapes-default`: the embedded default (generation/mvideo/shapes/default) - a 1.7M-parameter pixel-space
  MVideo trained from scratch on the shapes world (32 x 32, 8 frames, one to three objects), seed 0.
- `shapes-tiny`: the same pipeline at toy size (16 x 16, 4 frames, 1 layer), for tests and smoke runs.
- `finetune`: fine-tuning a pretrained MVideo/CogVideoX pipeline on a manifest (`--init-from`, `--manifest`),
  full or LoRA (`--lora-rank`), with the consistency loss against the frozen base.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import os
import textwrap
from dataclasses import dataclass, field
from typing import Any

from generation.mvideo.shapes.spec import ShapesModelSpec


@dataclass
class TrainConfig:
    """Every knob of a training run (the recipe's values, overridden by command-line flags).

    Each field is a `kmono mvideo train` flag (`max_steps` -> `--max-steps`), typed by its annotation and
    documented by its docstring (generation/mvideo/cli.py derives them), except `shapes` (the recipe's model).
    """

    out: str = ""
    """Folder of the exported pipeline (and, by default, of `checkpoints/`)."""
    recipe: str = "custom"
    """Name of the recipe the config started from (the `--recipe` flag picks it)."""
    seed: int = 0
    """Random seed (model init, data order, noise)."""
    # -- data ---------------------------------------------------------------------------------------------
    manifest: str | None = None
    """JSONL manifest of (video, caption, masks); None trains on the shapes world (`shapes` must be set)."""
    shapes: ShapesModelSpec | None = None
    """Build a shapes-world model from scratch with these sizes (when `init_from` is None)."""
    num_frames: int = 8
    """Frames per training clip (manifest data)."""
    height: int = 32
    """Training height (manifest data)."""
    width: int = 32
    """Training width (manifest data)."""
    frame_stride: int = 1
    """Take every n-th frame of a manifest video."""
    num_workers: int = 0
    """Data-loader worker processes."""
    num_threads: int = 0
    """torch intra-op threads (0: torch's default). 1 is steadier on a CPU shared with other jobs."""
    # -- model ----------------------------------------------------------------------------------------------
    init_from: str | None = None
    """An MVideoPipeline folder (or hub id) to fine-tune; None builds the shapes model from scratch."""
    train_text_encoder: bool = False
    """Train the text encoder too (the from-scratch shapes model needs it)."""
    lora_rank: int = 0
    """0: full fine-tuning; > 0: peft LoRA of this rank on the attention projections (mask layers stay trainable)."""
    lora_alpha: float | None = None
    """LoRA alpha (None: the rank)."""
    lora_targets: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
    """Transformer modules that get LoRA adapters."""
    # -- optimisation --------------------------------------------------------------------------------------
    max_steps: int = 1000
    """Optimizer steps."""
    batch_size: int = 8
    """Videos per process and micro-batch."""
    gradient_accumulation_steps: int = 1
    """Micro-batches per optimizer step."""
    learning_rate: float = 1e-4
    """Peak AdamW learning rate."""
    lr_warmup_steps: int = 0
    """Linear warmup steps (from 0 to the peak)."""
    lr_schedule: str = "constant"
    """"constant" or "cosine" (to `lr_min_ratio` x the peak at `max_steps`), both after the linear warmup
    (transformers' schedulers, see `trainer.build_lr_scheduler`)."""
    lr_min_ratio: float = 0.1
    """Final learning rate of the cosine schedule, as a fraction of the peak."""
    adam_beta1: float = 0.9
    """AdamW beta1."""
    adam_beta2: float = 0.99
    """AdamW beta2."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm (0: off)."""
    ema_decay: float = 0.0
    """0 disables the EMA; else the exported weights are the EMA's (diffusers' EMAModel: the average starts at
    the weights after step 1, then decay min(ema_decay, n / (n + 9)) at step n)."""
    # -- objective ------------------------------------------------------------------------------------------
    p_text_drop: float = 0.1
    """Probability of dropping a sample's caption (text guidance)."""
    p_mask_drop: float = 0.15
    """Probability of dropping a sample's mask, independently of the caption (mask guidance)."""
    consistency_weight: float = 0.0
    """Lambda of the consistency loss (0: off)."""
    consistency_teacher: str = "auto"
    """auto | base | ema | none: the consistency loss's teacher (see `losses.resolve_teacher`)."""
    object_loss_weight: float = 0.0
    """Extra loss weight inside the condition masks (see `losses.object_weights`); 0 = plain MSE."""
    object_loss_dilation: int = 0
    """Latent cells the weighted region extends past the masks (see `losses.object_weights`)."""
    binding_loss_weight: float = 0.0
    """Weight of the attention binding loss (mask slot k -> k-th caption phrase; see `binding`); 0 = off."""
    binding_heads: int = 1
    """Heads per layer the binding loss supervises (the first ones)."""
    timestep_bias: float = 1.0
    """1 = uniform timesteps; > 1 favours high noise (see `losses.sample_timesteps`)."""
    # -- bookkeeping ---------------------------------------------------------------------------------------
    checkpoint_dir: str | None = None
    """Where `save_state` checkpoints go; None: `<out>/checkpoints`."""
    checkpoint_every: int = 0
    """Save a resumable checkpoint every this many steps (0: only when stopping early via `stop_after`)."""
    keep_checkpoints: int = 2
    """Checkpoints kept, the oldest removed (0: all)."""
    log_every: int = 10
    """Report the loss every this many steps."""
    progress: bool = True
    """Show a progress bar (off: log lines instead)."""
    stop_after: int | None = None
    """Stop (saving a checkpoint) after this step without exporting: for tests of resume and for split runs."""

    def validate(self) -> None:
        """ValueError naming the first inconsistent field (checked before any model is built)."""
        from generation.mvideo.training.losses import resolve_teacher

        if self.max_steps < 1 or self.batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise ValueError("max_steps, batch_size and gradient_accumulation_steps must be >= 1")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        for name in ("p_text_drop", "p_mask_drop"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.lora_rank < 0:
            raise ValueError(f"lora_rank must be >= 0, got {self.lora_rank}")
        if self.timestep_bias <= 0 or self.object_loss_weight < 0 or self.object_loss_dilation < 0:
            raise ValueError("timestep_bias must be > 0; object_loss_weight and object_loss_dilation >= 0")
        teacher = resolve_teacher(
            self.consistency_teacher, self.consistency_weight, self.init_from is not None
        )
        if teacher == "ema" and self.ema_decay == 0:
            raise ValueError("consistency teacher 'ema' needs ema_decay > 0")
        if self.init_from is None and self.shapes is None:
            raise ValueError(
                "nothing to train: give --init-from (a pretrained MVideo pipeline) or a shapes recipe"
            )
        if self.manifest is None and self.shapes is None:
            raise ValueError("no training data: give --manifest, or use a shapes recipe")
        if self.manifest is not None and not os.path.isfile(self.manifest):
            raise ValueError(f"no manifest at {self.manifest}")

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    config: TrainConfig = field(default_factory=TrainConfig)


SHAPES_DEFAULT_SPEC = ShapesModelSpec(train_object_count_weights=(0.2, 0.4, 0.4))
SHAPES_TINY_SPEC = ShapesModelSpec(
    height=16,
    width=16,
    num_frames=4,
    num_mask_slots=2,
    max_objects=2,
    num_layers=1,
    num_attention_heads=2,
    attention_head_dim=16,
    patch_size=4,
    time_embed_dim=16,
    text_hidden_size=16,
    max_text_length=12,
    mask_in_channels=2,
    mask_hidden_channels=8,
    mask_layers=0,
)

RECIPES: dict[str, Recipe] = {
    "shapes-default": Recipe(
        "shapes-default",
        "the embedded default: a frame-exact pixel-space MVideo trained from scratch on the shapes world (1 CPU thread, ~35 min)",
        TrainConfig(
            recipe="shapes-default",
            seed=0,
            shapes=SHAPES_DEFAULT_SPEC,
            num_frames=8,
            height=32,
            width=32,
            train_text_encoder=True,
            max_steps=2200,
            batch_size=16,
            learning_rate=7e-4,
            lr_warmup_steps=100,
            lr_schedule="cosine",
            lr_min_ratio=0.1,
            weight_decay=0.01,
            ema_decay=0.995,
            p_text_drop=0.15,
            p_mask_drop=0.3,
            consistency_weight=0.0,
            consistency_teacher="auto",
            object_loss_weight=4.0,
            object_loss_dilation=3,
            binding_loss_weight=0.1,
            timestep_bias=1.0,
            num_threads=1,
            checkpoint_every=200,
            keep_checkpoints=3,
            log_every=10,
        ),
    ),
    "shapes-tiny": Recipe(
        "shapes-tiny",
        "a toy-size shapes-world model (16 x 16, 4 frames, 1 layer) for tests and smoke runs (seconds)",
        TrainConfig(
            recipe="shapes-tiny",
            seed=0,
            shapes=SHAPES_TINY_SPEC,
            num_frames=4,
            height=16,
            width=16,
            train_text_encoder=True,
            max_steps=4,
            batch_size=2,
            learning_rate=1e-3,
            ema_decay=0.9,
            p_text_drop=0.1,
            p_mask_drop=0.15,
            log_every=1,
            progress=False,
        ),
    ),
    "finetune": Recipe(
        "finetune",
        "fine-tune a pretrained MVideo pipeline (--init-from) on a manifest (--manifest), full or LoRA",
        TrainConfig(
            recipe="finetune",
            num_frames=49,
            height=480,
            width=720,
            train_text_encoder=False,
            max_steps=2000,
            batch_size=1,
            learning_rate=1e-4,
            lr_warmup_steps=100,
            lr_schedule="cosine",
            weight_decay=1e-4,
            ema_decay=0.0,
            p_text_drop=0.1,
            p_mask_drop=0.1,
            consistency_weight=0.5,
            consistency_teacher="auto",
            checkpoint_every=250,
        ),
    ),
}


def field_docs(cls: type) -> dict[str, str]:
    """A dataclass's attribute docstrings (the string right after a field), whitespace collapsed, by field name;
    {} when the source is not available."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body
    docs = {}
    for node, after in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def get_recipe(name: str) -> TrainConfig:
    """A copy of the named recipe's config; ValueError listing the known names."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
    return dataclasses.replace(RECIPES[name].config)
