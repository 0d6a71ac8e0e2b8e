"""MVideo's training objective: the diffusion loss, the consistency loss and condition dropout.

With x_0 the clean latents, eps ~ N(0, I), t ~ U{0, ..., T-1} (or biased, below), x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps and the
v-prediction target v = sqrt(a_t) eps - sqrt(1 - a_t) x_0 (as CogVideoX):

- **Diffusion loss** L_diff = mean over the batch and all elements of (f_theta(x_t, t, c_text, c_mask) - v)^2, with
  each sample's conditions dropped by condition dropout.
- **Object weighting and timestep bias** (options, for small objects): `object_weights` multiplies the loss of
  the elements inside the condition masks (of the samples that keep their mask) by 1 + w; `sample_timesteps`
  with bias b > 1 draws high-noise timesteps more often.
- **Binding loss** (option, `binding_loss_weight`): an attention-grounding loss that makes mask slot k read
  the k-th phrase of the caption; defined in `binding`.
- **Condition dropout** (for the two guidance scales): each sample's text is dropped with probability p_t (its
  caption becomes "", the negative prompt's default) and, independently, its mask with probability p_m (its
  mask latents are zeroed, which is exactly `mask_latents=None`, the pipeline's "no mask" branch). So a fraction
  p_t p_m of samples has neither, (1 - p_t) p_m text only, p_t (1 - p_m) mask only.
- **Consistency loss** (our reading of MVideo's "consistency loss", which keeps the text alignment of the base
  model while masks are learned): on the samples whose mask was dropped (set D), the fine-tuned model's
  prediction without a mask is regressed to a frozen teacher's prediction for the same input and text:

      L_cons = (1 / |D|) sum_{i in D} mean((f_theta(x_t^i, t^i, c_text^i, no mask) - f_teacher(x_t^i, t^i, c_text^i))^2)

  (0 when D is empty; the teacher gets no gradient). The objective is L = L_diff + lambda L_cons
  (+ lambda_bind L_bind when the binding loss is on). L_cons is 0 when the model equals the teacher, and it pulls the mask-free behaviour (the text-to-video model) back towards
  the teacher while the mask path is trained.
- **Teachers** (`consistency_teacher`): "base" is the frozen model training started from (for LoRA, the same
  transformer with its adapters disabled: no copy); "ema" is the exponential moving average of the model being
  trained (the only choice when training from scratch, where there is no base model: a self-distillation that
  damps drift of the text-only behaviour); "none" switches the loss off (lambda = 0). "auto" means "base" when
  fine-tuning from a pretrained model and "none" from scratch, so from-scratch training degrades to the plain
  diffusion loss and costs no extra forward pass.
"""

from __future__ import annotations

import torch

TEACHERS = ("auto", "base", "ema", "none")
PREDICTION_TYPES = ("v_prediction", "sample")
"""What the denoiser may predict: v (CogVideoX) or the clean sample x_0 (scored in v-space, below)."""
MIN_SIGMA = 0.4
"""Floor of sigma = sqrt(1 - a_t) when an x_0 prediction is scored as a v prediction. The x_0 error is weighted by
1 / sigma^2 = SNR + 1; the floor caps that at 1 / 0.4^2 = 6.25, i.e. SNR capped at gamma = 5.25: the Min-SNR-gamma
weighting (Hang et al., "Efficient Diffusion Training via Min-SNR Weighting Strategy", ICCV 2023, gamma = 5).
Measured on the shapes default at 400 steps: floor 0.4 gave mask mIoU 0.46 and background noise 15.5/255, floor
0.2 gave 0.37 and 18.2, floor 0.05 had not left noise yet."""


def sample_to_velocity(sample: torch.Tensor, noisy: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """The v prediction implied by an x_0 prediction: v = (sqrt(a) x_t - x_0) / sigma, sigma = sqrt(1 - a)
    floored at `MIN_SIGMA` (below the floor this is not the exact v: it is the capped weighting). Scoring x_0 predictions by their v error is "x-prediction with v-loss" (Li and He,
    "Back to Basics: Let Denoising Generative Models Denoise", 2025): the squared error is |x_0 - x_0*|^2 /
    sigma^2, the same weighting as the v-loss, while the network only ever outputs clean frames (measured on the
    shapes default: v-prediction left visible noise on flat backgrounds)."""
    sigma = (1 - alpha_bar).clamp(min=MIN_SIGMA**2).sqrt()  # Min-SNR-gamma: see MIN_SIGMA
    return (alpha_bar.sqrt() * noisy - sample) / sigma


def sample_condition_dropout(
    batch_size: int, p_text: float, p_mask: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(drop_text, drop_mask): two independent (B,) bool tensors, True with probability p_text and p_mask."""
    for name, p in (("p_text", p_text), ("p_mask", p_mask)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {p}")
    draws = torch.rand(2, batch_size, generator=generator)
    return draws[0] < p_text, draws[1] < p_mask


def diffusion_loss(
    prediction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared error of the v-prediction, over all elements; with `weights` (broadcastable to the
    prediction) the weighted mean sum(w e^2) / sum(w)."""
    error = (prediction.float() - target.float()) ** 2
    if weights is None:
        return error.mean()
    weights = weights.float().expand_as(error)
    return (weights * error).sum() / weights.sum()


def object_weights(
    mask_video: torch.Tensor,
    mask_keep: torch.Tensor,
    latent_shape: tuple[int, ...],
    weight: float,
    dilation: int = 0,
) -> torch.Tensor | None:
    """Per-element loss weights 1 + weight * M, M = the union of the condition masks on the latent grid
    (max-pooled, then dilated by `dilation` cells), for the samples whose mask is kept (1 elsewhere); None
    when `weight` is 0.

    mask_video: (B, T, K, H, W); latent_shape: (B, F, C, h, w). Our choice for small objects: their pixels
    are a small part of the loss, so the mask path learns slowly; weighting them only where the mask is
    an input keeps the optimum (the weights are a function of the model's own inputs). The dilation gives
    the background just outside an object the same weight, so drawing past the mask costs as much as
    falling short of it (without it, the model learned to overshoot: blobs the size of whole patches).
    """
    if weight == 0:
        return None
    b, f, _, h, w = latent_shape
    union = mask_video.amax(dim=2).float()  # (B, T, H, W)
    pooled = torch.nn.functional.adaptive_max_pool3d(union[:, None], (f, h, w))[:, 0]  # (B, F, h, w)
    if dilation > 0:
        k = 2 * dilation + 1
        pooled = torch.nn.functional.max_pool2d(pooled.reshape(b * f, 1, h, w), k, stride=1, padding=dilation)
        pooled = pooled.reshape(b, f, h, w)
    pooled = pooled * mask_keep.to(pooled.dtype).view(-1, 1, 1, 1)
    return (1.0 + weight * pooled)[:, :, None]  # (B, F, 1, h, w)


def sample_timesteps(
    batch_size: int, num_train_timesteps: int, bias: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(B,) int64 timesteps: t = floor(T u^(1 / bias)), u ~ U(0, 1); bias 1 is uniform, bias 2 has a density
    growing linearly with t (more high-noise steps, where layout, masks and colours are decided)."""
    if bias <= 0:
        raise ValueError(f"timestep bias must be > 0, got {bias}")
    u = torch.rand(batch_size, generator=generator)
    return (num_train_timesteps * u ** (1.0 / bias)).long().clamp(max=num_train_timesteps - 1)


def consistency_loss(
    prediction: torch.Tensor, teacher_prediction: torch.Tensor, drop_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """L_cons (module docstring): mean squared distance to the teacher over the mask-dropped samples, else 0.

    prediction, teacher_prediction: (B, ...) predictions without a mask; drop_mask: (B,) bool, the set D
    (None: every sample given is in D - the trainer passes only the dropped samples).
    """
    if prediction.shape != teacher_prediction.shape:
        raise ValueError(
            f"prediction {tuple(prediction.shape)} and teacher {tuple(teacher_prediction.shape)} differ"
        )
    if drop_mask is None:
        drop_mask = torch.ones(prediction.shape[0], dtype=torch.bool, device=prediction.device)
    if not bool(drop_mask.any()):
        return prediction.sum() * 0.0  # keeps the graph (and DDP's view of used parameters) intact
    per_sample = ((prediction.float() - teacher_prediction.detach().float()) ** 2).flatten(1).mean(dim=1)
    return per_sample[drop_mask].mean()


def resolve_teacher(teacher: str, weight: float, has_base: bool) -> str:
    """The teacher actually used: "base", "ema" or "none" (see the module docstring)."""
    if teacher not in TEACHERS:
        raise ValueError(f"consistency teacher must be one of {TEACHERS}, got {teacher!r}")
    if weight < 0:
        raise ValueError(f"consistency weight must be >= 0, got {weight}")
    if weight == 0 or teacher == "none":
        return "none"
    if teacher == "auto":
        return "base" if has_base else "none"
    if teacher == "base" and not has_base:
        raise ValueError("consistency teacher 'base' needs a pretrained model to start from (--init-from)")
    return teacher
