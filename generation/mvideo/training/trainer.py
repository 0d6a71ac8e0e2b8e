"""MVideo training with accelerate: one CPU or GPU, several GPUs, several nodes (accelerate's own config).

    kmono mvideo train --recipe shapes-default --out generation/mvideo/shapes/default   # one CPU or GPU
    accelerate launch -m generation.mvideo.training --recipe finetune --init-from ckpt/ \\
        --manifest data.jsonl --out runs/ft --lora-rank 64        # the flags of `kmono mvideo train`

Scaling out is accelerate's job, not ours: `accelerate config` once (GPUs, machines, mixed precision, FSDP),
then `accelerate launch -m generation.mvideo.training ...` on every node (or `accelerate launch --multi_gpu
--num_processes 8 --num_machines 2 --machine_rank R --main_process_ip HOST -m generation.mvideo.training ...`).
Each process takes its own slice of every step's batch. Several CPU processes (gloo):
`ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 -m generation.mvideo.training ...`.

The objective (diffusion loss, condition dropout, consistency loss) is defined in `losses`; the data in `data`.

Our choices:

- **What trains.** Full fine-tuning trains the transformer and the mask encoder (and the text encoder with
  `train_text_encoder`, which the from-scratch shapes model needs). LoRA (`lora_rank > 0`) adds peft LoRA
  adapters to the transformer's attention projections (`lora_targets`) and trains only them plus the mask input
  layers (the transformer's `mask_embed` and the whole mask encoder), which are new and have no base weights
  to keep. The VAE never trains.
- **One wrapped module.** Transformer, mask encoder and text encoder sit in one `MVideoDenoiser` so that one
  forward through accelerate's (DDP) wrapper covers every trainable parameter; teachers run unwrapped under
  `no_grad`.
- **Determinism.** Every random draw of step s (noise, timesteps, condition dropout) comes from a generator
  seeded with (seed, s, micro-batch, process), and batches are a pure function of the step (`StepBatchSampler`),
  so a run resumed from a checkpoint continues bit-identically on CPU: model, optimizer, LR schedule, EMA and
  the step counter come from `accelerator.save_state` / `load_state` (which also saves the global RNG states).
- **Checkpoints** go to `<checkpoint_dir>/step-XXXXXXX` every `checkpoint_every` steps (the last
  `keep_checkpoints` kept); `resume="latest"` picks the newest. **Export**: the final weights (the EMA's when
  `ema_decay > 0`; LoRA merged into the base weights) are saved as an `MVideoPipeline` folder at `out`, with
  `training.json` recording the config, steps, wall time and last losses.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers.training_utils import EMAModel
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers.optimization import get_scheduler

from generation.mvideo.defaults import COGVIDEOX_FPS
from generation.mvideo.defaults.engine_file import read_engine_defaults, save_engine_defaults
from generation.mvideo.pipelines import MVideoPipeline
from generation.mvideo.pipelines.loading import sampling_call_defaults
from generation.mvideo.pipelines.pipeline_mvideo import rotary_embeddings  # also training.rotary_embeddings
from generation.mvideo.shapes.spec import SHAPES_SAMPLING, SHAPES_TEXT_ONLY
from generation.mvideo.training import binding
from generation.mvideo.training.config import TrainConfig
from generation.mvideo.training.data import (
    ManifestDataset,
    ShapesWorldDataset,
    StepBatchSampler,
    collate_examples,
)
from generation.mvideo.training.losses import (
    PREDICTION_TYPES,
    consistency_loss,
    diffusion_loss,
    object_weights,
    resolve_teacher,
    sample_condition_dropout,
    sample_timesteps,
    sample_to_velocity,
)

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "step-"


# ----------------------------------------------------------------------------------------------- modules


class MVideoDenoiser(nn.Module):
    """Transformer + mask encoder + text encoder: (noisy latents, t, token ids, masks) -> v-prediction."""

    def __init__(self, transformer: nn.Module, mask_encoder: nn.Module, text_encoder: nn.Module):
        super().__init__()
        self.transformer = transformer
        self.mask_encoder = mask_encoder
        self.text_encoder = text_encoder
        self._rotary_cache: dict[tuple, Any] = {}

    def encode_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.text_encoder(input_ids)[0]

    def rotary(self, latents: torch.Tensor) -> Any:
        _, f, _, h, w = latents.shape
        key = (f, h, w, latents.device)
        if key not in self._rotary_cache:
            self._rotary_cache[key] = rotary_embeddings(self.transformer.config, f, h, w, latents.device)
        return self._rotary_cache[key]

    def forward(
        self,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor,
        input_ids: torch.Tensor,
        mask_video: torch.Tensor | None,
        mask_keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """noisy_latents (B, F, C, h, w), timesteps (B,), input_ids (B, L), mask_video (B, T, K, H, W) or None,
        mask_keep (B,) 1 = keep the mask, 0 = drop it (zero mask latents, the pipeline's no-mask branch)."""
        text = self.encode_text(input_ids).to(noisy_latents.dtype)  # (B, L, D)
        mask_latents = None
        if mask_video is not None:
            mask_latents = self.mask_encoder(mask_video.to(noisy_latents.dtype))  # (B, F, Cm, h, w)
            if mask_keep is not None:
                mask_latents = mask_latents * mask_keep.to(mask_latents.dtype).view(-1, 1, 1, 1, 1)
        return self.transformer(
            hidden_states=noisy_latents,
            encoder_hidden_states=text,
            timestep=timesteps,
            mask_latents=mask_latents,
            image_rotary_emb=self.rotary(noisy_latents),
            return_dict=False,
        )[0]


class DenoiserEMA(EMAModel):
    """diffusers' `EMAModel` over the denoiser's trainable parameters, whose averages are the parameters of a frozen
    copy of the denoiser (`module`: the "ema" consistency teacher and the exported weights), not a second copy.

    Decay at update n is diffusers' default warm-up: 0 at n = 1 (the average starts at the weights after the first
    step), then min(decay, n / (n + 9)). `update(denoiser)` averages in the denoiser's current weights.
    `load_state_dict` also reads checkpoints of the hand-written EMA this replaced
    ({"num_updates", "decay", "module": the averaged state dict}). Do not call `to()`: move the denoiser first.
    """

    def __init__(self, denoiser: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        super().__init__([], decay=decay)
        self.names = [name for name, param in denoiser.named_parameters() if param.requires_grad]
        self.module = copy.deepcopy(denoiser).eval().requires_grad_(False)
        self.shadow_params = self.tracked(self.module)

    def tracked(self, denoiser: nn.Module) -> list[nn.Parameter]:
        """The parameters this EMA averages, of `denoiser` (the live model or `module`), in a fixed order."""
        params = dict(denoiser.named_parameters())
        return [params[name] for name in self.names]

    def update(self, denoiser: nn.Module) -> None:
        self.step(self.tracked(denoiser))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "module" in state_dict:  # a checkpoint of the hand-written EMA
            module_state = state_dict["module"]
            state_dict = {
                "decay": float(state_dict["decay"]),
                "optimization_step": int(state_dict["num_updates"]),
                "shadow_params": [module_state[name] for name in self.names],
            }
        state_dict = dict(state_dict)
        loaded = state_dict.pop("shadow_params", None)
        super().load_state_dict(state_dict)
        if loaded is not None:  # copied into `module`'s parameters (EMAModel would replace the list)
            if len(loaded) != len(self.shadow_params):
                raise ValueError(f"EMA state has {len(loaded)} tensors, this EMA averages {len(self.names)}")
            with torch.no_grad():
                for averaged, value in zip(self.shadow_params, loaded, strict=True):
                    averaged.copy_(value)


@dataclass
class TrainState:
    """The step counter and the recent logged losses (total and consistency), checkpointed with the model."""

    step: int = 0
    losses: list[float] = field(default_factory=list)
    consistency: list[float] = field(default_factory=list)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "losses": list(self.losses), "consistency": list(self.consistency)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.losses = [float(x) for x in state["losses"]]
        self.consistency = [float(x) for x in state["consistency"]]


@dataclass
class TrainResult:
    step: int
    out: Path | None
    checkpoint: Path | None
    last_loss: float
    wall_seconds: float
    state: TrainState
    denoiser: MVideoDenoiser
    pipeline: MVideoPipeline | None
    is_main_process: bool = True


# ----------------------------------------------------------------------------------------------- setup


def load_or_build_pipeline(config: TrainConfig) -> tuple[MVideoPipeline, bool]:
    """(pipeline, pretrained): `init_from` loaded, or the shapes model of `config.shapes` built from scratch."""
    if config.init_from:
        return MVideoPipeline.from_pretrained(config.init_from), True
    if config.shapes is None:
        raise ValueError(
            "nothing to train: give --init-from (a pretrained MVideo pipeline) or a shapes recipe"
        )
    from generation.mvideo.shapes.model import build_shapes_pipeline

    return build_shapes_pipeline(config.shapes, seed=config.seed), False


def add_lora(transformer: nn.Module, rank: int, alpha: float | None, targets: tuple[str, ...]) -> None:
    """peft LoRA adapters ("default") on `targets` of the transformer (Gaussian A, zero B: outputs unchanged)."""
    from peft import LoraConfig

    transformer.add_adapter(
        LoraConfig(
            r=rank, lora_alpha=alpha or rank, init_lora_weights="gaussian", target_modules=list(targets)
        )
    )


def is_mask_parameter(name: str) -> bool:
    """Whether a transformer parameter belongs to the mask input layers (always trainable)."""
    return name.startswith("mask_embed.")


def set_trainable(denoiser: MVideoDenoiser, config: TrainConfig) -> list[nn.Parameter]:
    """Freeze/unfreeze per the config (module docstring); returns the trainable parameters."""
    denoiser.requires_grad_(False)
    if config.lora_rank > 0:
        for name, param in denoiser.transformer.named_parameters():
            param.requires_grad_("lora_" in name or is_mask_parameter(name))
    else:
        denoiser.transformer.requires_grad_(True)
    denoiser.mask_encoder.requires_grad_(True)
    if config.train_text_encoder:
        denoiser.text_encoder.requires_grad_(True)
    return [p for p in denoiser.parameters() if p.requires_grad]


LR_SCHEDULES = {"constant": "constant_with_warmup", "cosine": "cosine_with_min_lr"}
"""`TrainConfig.lr_schedule` -> transformers' scheduler name."""


def build_lr_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, num_processes: int = 1) -> Any:
    """transformers' `get_scheduler`: a linear warmup from 0 over `lr_warmup_steps`, then constant or a half
    cosine to `lr_min_ratio` x the peak at `max_steps`. Lengths are counted in scheduler steps, `num_processes`
    per optimizer step: accelerate's prepared scheduler steps once per process (as diffusers' training scripts)."""
    if config.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {sorted(LR_SCHEDULES)}, got {config.lr_schedule!r}")
    return get_scheduler(
        LR_SCHEDULES[config.lr_schedule],
        optimizer,
        num_warmup_steps=config.lr_warmup_steps * num_processes,
        num_training_steps=config.max_steps * num_processes,
        scheduler_specific_kwargs={"min_lr_rate": config.lr_min_ratio}
        if config.lr_schedule == "cosine"
        else None,
    )


def build_dataset(config: TrainConfig, num_mask_slots: int):
    if config.manifest:
        return ManifestDataset(
            config.manifest,
            num_frames=config.num_frames,
            height=config.height,
            width=config.width,
            num_mask_slots=num_mask_slots,
            frame_stride=config.frame_stride,
        )
    if config.shapes is None:
        raise ValueError("no training data: give --manifest, or use a shapes recipe")
    from generation.mvideo.shapes.world import ShapesWorld

    spec = config.shapes
    world = ShapesWorld(
        height=spec.height,
        width=spec.width,
        num_frames=spec.num_frames,
        min_objects=spec.min_objects,
        max_objects=spec.max_objects,
        object_count_weights=spec.train_object_count_weights,
    )
    return ShapesWorldDataset(world, num_mask_slots=num_mask_slots, split="train")


def step_generator(seed: int, step: int, micro: int, rank: int) -> torch.Generator:
    """The generator of every random draw of (step, micro-batch, process)."""
    mixed = (seed * 1_000_003 + step) * 1_009 + micro
    return torch.Generator().manual_seed((mixed * 65_537 + rank) % (2**63 - 1))


def checkpoint_dirs(root: Path) -> list[Path]:
    """Checkpoints under `root`, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and re.fullmatch(rf"{CHECKPOINT_PREFIX}\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))


def resolve_resume(resume: str | None, checkpoint_root: Path) -> Path | None:
    if not resume:
        return None
    if resume == "latest":
        found = checkpoint_dirs(checkpoint_root)
        return found[-1] if found else None
    path = Path(resume)
    if not path.is_dir():
        raise FileNotFoundError(f"no checkpoint folder at {path}")
    return path


# ----------------------------------------------------------------------------------------------- training


def train(
    config: TrainConfig,
    *,
    resume: str | None = None,
    accelerator: Accelerator | None = None,
    export: bool = True,
) -> TrainResult:
    """Run (or resume) a training run; see the module docstring. Returns the final step and paths."""
    if not config.out and export:
        raise ValueError("config.out (the export folder) is required")
    config.validate()
    started = time.monotonic()
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    accelerator = accelerator or Accelerator(gradient_accumulation_steps=config.gradient_accumulation_steps)
    device = accelerator.device
    out = Path(config.out) if config.out else None
    checkpoint_root = (
        Path(config.checkpoint_dir) if config.checkpoint_dir else (out or Path(".")) / "checkpoints"
    )
    set_seed(config.seed)

    # 1. Components, trainable parameters, teachers
    pipe, pretrained = load_or_build_pipeline(config)
    vae = pipe.vae.to(device).eval().requires_grad_(False)
    scheduler = pipe.scheduler
    prediction_type = getattr(scheduler.config, "prediction_type", "v_prediction")
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(
            f"training supports prediction types {PREDICTION_TYPES}; the scheduler predicts {prediction_type!r}"
        )
    if config.lora_rank > 0:
        add_lora(pipe.transformer, config.lora_rank, config.lora_alpha, config.lora_targets)
    recorder = (
        binding.install(pipe.transformer, config.binding_heads) if config.binding_loss_weight > 0 else None
    )
    denoiser = MVideoDenoiser(pipe.transformer, pipe.mask_encoder, pipe.text_encoder).to(device)
    trainable = set_trainable(denoiser, config)
    teacher_kind = resolve_teacher(config.consistency_teacher, config.consistency_weight, pretrained)
    base_teacher: MVideoDenoiser | None = None
    if teacher_kind == "base" and config.lora_rank == 0:
        base_teacher = copy.deepcopy(denoiser).eval().requires_grad_(False)
    ema = (
        DenoiserEMA(denoiser, config.ema_decay) if config.ema_decay > 0 else None
    )  # validate(): "ema" has one
    num_params = sum(p.numel() for p in trainable)
    logger.info(
        "trainable parameters: %.3fM (%s, teacher=%s)",
        num_params / 1e6,
        f"LoRA r={config.lora_rank}" if config.lora_rank else "full",
        teacher_kind,
    )

    # 2. Optimizer, schedule, accelerate
    optimizer = torch.optim.AdamW(
        trainable,
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        weight_decay=config.weight_decay,
    )
    lr_scheduler = build_lr_scheduler(optimizer, config, accelerator.num_processes)
    denoiser, optimizer, lr_scheduler = accelerator.prepare(denoiser, optimizer, lr_scheduler)
    state = TrainState()
    accelerator.register_for_checkpointing(state)
    if ema is not None:
        accelerator.register_for_checkpointing(ema)
    resume_from = resolve_resume(resume, checkpoint_root)
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        logger.info("resumed from %s at step %d", resume_from, state.step)

    # 3. Data: batches as a function of the step
    unwrapped = accelerator.unwrap_model(denoiser)
    num_slots = unwrapped.mask_encoder.config.num_mask_slots
    dataset = build_dataset(config, num_slots)
    accum = config.gradient_accumulation_steps
    sampler = StepBatchSampler(
        len(dataset),
        config.batch_size,
        seed=config.seed,
        start_step=state.step * accum,
        max_steps=config.max_steps * accum,
        rank=accelerator.process_index,
        world_size=accelerator.num_processes,
        streaming=bool(getattr(dataset, "streaming", False)),
    )
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate_examples,
        num_workers=config.num_workers,
        persistent_workers=config.num_workers > 0,
    )
    spatial, shift, scaling = (
        pipe.vae_scale_factor_spatial,
        pipe.vae_shift_factor,
        pipe.vae_scaling_factor_image,
    )
    max_text = getattr(unwrapped.transformer.config, "max_text_seq_length", 226)
    tokenizer = pipe.tokenizer
    separator_ids = [i for i in tokenizer.convert_tokens_to_ids([",", "and"]) if i != tokenizer.unk_token_id]
    special_ids = list(tokenizer.all_special_ids)
    patch, patch_t = unwrapped.transformer.config.patch_size, unwrapped.transformer.config.patch_size_t or 1
    alphas = scheduler.alphas_cumprod
    num_train_timesteps = scheduler.config.num_train_timesteps

    def teacher_predict(noisy, t, ids) -> torch.Tensor:
        if teacher_kind == "ema":
            return ema.module(noisy, t, ids, None)
        if base_teacher is not None:
            return base_teacher(noisy, t, ids, None)
        transformer = unwrapped.transformer  # LoRA: the base is the transformer without its adapters
        transformer.disable_adapters()
        try:
            return unwrapped(noisy, t, ids, None)
        finally:
            transformer.enable_adapters()

    # 4. Loop
    stop_at = min(config.max_steps, config.stop_after) if config.stop_after is not None else config.max_steps
    progress = tqdm(
        total=config.max_steps,
        initial=state.step,
        desc="train",
        disable=not (config.progress and accelerator.is_local_main_process),
        dynamic_ncols=True,
    )
    denoiser.train()
    micro = 0
    last_loss = float("nan")
    loss_sum = cons_sum = bind_sum = 0.0
    window = 0
    checkpoint: Path | None = None
    batches = iter(loader)
    while state.step < stop_at:
        batch = next(batches)
        g = step_generator(config.seed, state.step, micro, accelerator.process_index)
        with accelerator.accumulate(denoiser):
            video = batch["video"].to(device)  # (B, T, 3, H, W) in [-1, 1]
            masks = batch["masks"].to(device)  # (B, T, K, H, W)
            bsz = video.shape[0]
            with torch.no_grad():
                x = vae.encode(video.permute(0, 2, 1, 3, 4).to(vae.dtype)).latent_dist.mode()
                latents = ((x - shift) * scaling).permute(0, 2, 1, 3, 4).float()  # (B, F, C, h, w)
            drop_text, drop_mask = sample_condition_dropout(bsz, config.p_text_drop, config.p_mask_drop, g)
            timesteps = sample_timesteps(bsz, num_train_timesteps, config.timestep_bias, g)
            noise = torch.randn(latents.shape, generator=g).to(device)
            timesteps = timesteps.to(device)
            a = alphas.to(device)[timesteps].view(-1, 1, 1, 1, 1)
            noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
            target = a.sqrt() * noise - (1 - a).sqrt() * latents  # v
            captions = ["" if d else c for c, d in zip(batch["caption"], drop_text.tolist(), strict=True)]
            ids = tokenizer(
                captions, padding="max_length", max_length=max_text, truncation=True, return_tensors="pt"
            ).input_ids.to(device)
            keep = (~drop_mask).to(device)
            if recorder is not None:
                recorder.targets = binding.BindingTargets(
                    binding.token_slots(masks, keep & ~drop_text.to(device), patch, patch_t, spatial),
                    binding.phrase_masks(ids, separator_ids, special_ids, masks.shape[2]),
                )
            with accelerator.autocast():
                pred = denoiser(noisy, timesteps, ids, masks, keep)
                if prediction_type == "sample":  # x-prediction, scored in v-space (module docstring)
                    pred, target = sample_to_velocity(pred, noisy, a), sample_to_velocity(latents, noisy, a)
                bind = torch.zeros((), device=device)
                if recorder is not None:
                    recorder.targets = None
                    bind = recorder.take_loss()
                    bind = bind if bind is not None else torch.zeros((), device=device)
                weights = object_weights(
                    masks, keep, tuple(latents.shape), config.object_loss_weight, config.object_loss_dilation
                )
                loss = diffusion_loss(pred, target, weights)
                cons = torch.zeros((), device=device)
                if teacher_kind != "none" and bool(drop_mask.any()):
                    dropped = drop_mask.to(device)
                    with torch.no_grad():
                        teacher_pred = teacher_predict(noisy[dropped], timesteps[dropped], ids[dropped])
                    if prediction_type == "sample":
                        teacher_pred = sample_to_velocity(teacher_pred, noisy[dropped], a[dropped])
                    cons = consistency_loss(pred[dropped], teacher_pred)
                    loss = loss + config.consistency_weight * cons
                loss = loss + config.binding_loss_weight * bind
            accelerator.backward(loss)
            if accelerator.sync_gradients and config.max_grad_norm > 0:
                accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        micro += 1
        loss_sum += float(loss.detach())
        cons_sum += float(cons.detach())
        bind_sum += float(bind.detach())
        window += 1
        if not accelerator.sync_gradients:
            continue
        micro = 0
        state.step += 1
        if ema is not None:
            ema.update(accelerator.unwrap_model(denoiser))
        last_loss = loss_sum / window
        logging_step = state.step % config.log_every == 0 or state.step == stop_at
        if logging_step and accelerator.num_processes > 1:  # the mean over processes (a collective: all log)
            pair = accelerator.reduce(torch.tensor([last_loss, cons_sum / window], device=device), "mean")
            last_loss, cons_sum = float(pair[0]), float(pair[1]) * window
        if not math.isfinite(last_loss):
            raise FloatingPointError(f"loss is {last_loss} at step {state.step}")
        if logging_step:
            state.losses = (state.losses + [last_loss])[-100:]
            state.consistency = (state.consistency + [cons_sum / window])[-100:]
            postfix = {"loss": f"{last_loss:.4f}", "lr": f"{lr_scheduler.get_last_lr()[0]:.2e}"}
            if teacher_kind != "none":
                postfix["cons"] = f"{cons_sum / window:.4f}"
            if recorder is not None:
                postfix["bind"] = f"{bind_sum / window:.3f}"
            progress.set_postfix(postfix, refresh=False)
            if progress.disable:
                logger.info("step %d/%d %s", state.step, config.max_steps, postfix)
        loss_sum = cons_sum = bind_sum = 0.0
        window = 0
        progress.update(1)
        stopping_early = state.step == stop_at and stop_at < config.max_steps
        if (config.checkpoint_every and state.step % config.checkpoint_every == 0) or stopping_early:
            checkpoint = save_checkpoint(accelerator, checkpoint_root, state.step, config.keep_checkpoints)
    progress.close()
    accelerator.wait_for_everyone()

    final = accelerator.unwrap_model(denoiser)
    exported = None
    if export and state.step >= config.max_steps and accelerator.is_main_process:
        exported = export_pipeline(
            pipe, ema.module if ema is not None else final, config, out, state, started
        )
    accelerator.wait_for_everyone()
    return TrainResult(
        step=state.step,
        out=out if exported is not None else None,
        checkpoint=checkpoint,
        last_loss=last_loss,
        wall_seconds=time.monotonic() - started,
        state=state,
        denoiser=final,
        pipeline=exported,
    )


def save_checkpoint(accelerator: Accelerator, root: Path, step: int, keep: int) -> Path:
    path = root / f"{CHECKPOINT_PREFIX}{step:07d}"
    accelerator.save_state(str(path))
    if accelerator.is_main_process and keep > 0:
        for old in checkpoint_dirs(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    logger.info("checkpoint: %s", path)
    return path


def merge_lora(transformer: nn.Module) -> nn.Module:
    """A plain copy of `transformer` with its LoRA adapters merged into the base weights (no peft layers)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    merged = copy.deepcopy(transformer)
    for module in merged.modules():
        if isinstance(module, BaseTunerLayer):
            module.merge()
    state = {}
    for name, value in merged.state_dict().items():
        if "lora_" in name:
            continue
        state[name.replace(".base_layer.", ".")] = value
    plain = type(transformer).from_config(transformer.config)
    plain.load_state_dict(state, strict=True)
    return plain


def sampling_defaults(config: TrainConfig, pipe: MVideoPipeline) -> dict:
    """What the exported folder's `engine.json` says: a fine-tune keeps its base's sampling (a published base
    without one: the pipeline's call defaults); a shapes model from scratch samples as `SHAPES_SAMPLING` at
    CogVideoX's 8 fps and answers text-only requests with a planned layout (`SHAPES_TEXT_ONLY`)."""
    if config.init_from:
        return read_engine_defaults(config.init_from) or sampling_call_defaults(pipe)
    return {
        "fps": COGVIDEOX_FPS,
        "num_inference_steps": SHAPES_SAMPLING["num_inference_steps"],
        "guidance_scale": SHAPES_SAMPLING["guidance_scale"],
        "text_only": SHAPES_TEXT_ONLY,
    }


def export_pipeline(
    pipe: MVideoPipeline,
    denoiser: MVideoDenoiser,
    config: TrainConfig,
    out: Path,
    state: TrainState,
    started: float,
) -> MVideoPipeline:
    """Save the trained components as an MVideoPipeline folder at `out` (plus `training.json`)."""
    transformer = denoiser.transformer
    if config.lora_rank > 0:
        transformer = merge_lora(transformer)
    if config.binding_loss_weight > 0:
        binding.uninstall(transformer)
    exported = MVideoPipeline(
        tokenizer=pipe.tokenizer,
        text_encoder=denoiser.text_encoder,
        vae=pipe.vae,
        transformer=transformer,
        mask_encoder=denoiser.mask_encoder,
        scheduler=pipe.scheduler,
    ).to("cpu")
    out.mkdir(parents=True, exist_ok=True)
    exported.save_pretrained(out)
    save_engine_defaults(out, **sampling_defaults(config, exported))
    record = {
        "recipe": config.recipe,
        "config": config.to_dict(),
        "steps": state.step,
        "wall_seconds": round(time.monotonic() - started, 1),
        "last_losses": state.losses[-10:],
        "torch_threads": torch.get_num_threads(),
    }
    (out / "training.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    logger.info("exported pipeline to %s", out)
    return exported
