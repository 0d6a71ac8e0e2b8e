"""Keyframed values over frames (positions, offsets, scale factors, angles, time curves) and the error type
that every mask-sequence operation raises for a bad argument.

    path = Trajectory([(0, (10, 10)), (15, (50, 40))])           # a 2-D point per frame, linear
    path.at(7)                                                   # array([28.67, 24.67])
    scale = Trajectory([(0, 1.0), (10, 2.0)], "smooth")           # a scalar per frame, Catmull-Rom
    Trajectory.parse(["0:10,10", "15:50,40"])                     # the CLI form FRAME:X,Y / FRAME:V

Interpolation (as `kmono.masks.v1.Interpolation`): before the first keyframe the first value holds, after the
last keyframe the last value holds; in between:

- "linear": straight lines between neighbouring keyframes;
- "step": each keyframe's value holds until the next keyframe;
- "smooth": a cubic Hermite spline through the keyframes with Catmull-Rom tangents for uneven spacing
  (m_k = (p_{k+1} - p_{k-1}) / (t_{k+1} - t_{k-1}), one-sided at the ends). *Our* reading of "Catmull-Rom"
  when keyframes are not evenly spaced; it passes through every keyframe and may overshoot between them.

Keyframes must be sorted by frame index, strictly increasing, with non-negative indices (a duplicate or an
unsorted list is an error rather than silently reordered: it is usually a typo). Values must be finite.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from libs.errors import FieldError

__all__ = ["INTERPOLATIONS", "FieldError", "Interpolation", "Trajectory", "parse_keyframe"]

Interpolation = Literal["linear", "step", "smooth"]
INTERPOLATIONS: tuple[Interpolation, ...] = ("linear", "step", "smooth")


def check_int(value: Any, field: str, *, minimum: int | None = None) -> int:
    """`value` as an int (bools refused), at least `minimum`, else FieldError naming `field`."""
    if isinstance(value, bool | np.bool_):
        raise FieldError(field, f"must be an integer, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise FieldError(field, f"must be an integer, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise FieldError(field, f"must be >= {minimum}, got {number}")
    return number


def check_number(value: Any, field: str, *, positive: bool = False) -> float:
    """`value` as a finite float (bools refused), > 0 if `positive`, else FieldError naming `field`."""
    if isinstance(value, bool | np.bool_):
        raise FieldError(field, f"must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise FieldError(field, f"must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise FieldError(field, f"must be finite, got {number}")
    if positive and number <= 0:
        raise FieldError(field, f"must be > 0, got {number:g}")
    return number


@dataclass(frozen=True, init=False)
class Trajectory:
    """Keyframes (frame index, value) of a scalar or of a 2-D point, and how frames between them are filled.

    `dims` is 1 for scalars and 2 for points; `at(t)` returns a float for scalars, an (x, y) array for points.
    """

    frames: tuple[int, ...]
    values: np.ndarray  # (K, dims) float64
    interpolation: Interpolation

    def __init__(
        self,
        keyframes: Iterable[tuple[int, float | Sequence[float]]],
        interpolation: Interpolation = "linear",
    ) -> None:
        keyframes = list(keyframes)
        if not keyframes:
            raise FieldError("keyframes", "needs at least one keyframe")
        if interpolation not in INTERPOLATIONS:
            raise FieldError(
                "interpolation", f"must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}"
            )
        frames: list[int] = []
        rows: list[list[float]] = []
        dims = None
        for i, keyframe in enumerate(keyframes):
            try:
                frame, value = keyframe
            except (TypeError, ValueError):
                raise FieldError(
                    f"keyframes[{i}]", f"must be (frame_index, value), got {keyframe!r}"
                ) from None
            frame = check_int(frame, f"keyframes[{i}].frame_index", minimum=0)
            if frames and frame <= frames[-1]:
                raise FieldError(
                    f"keyframes[{i}].frame_index",
                    f"keyframes must be sorted by frame index without repeats; {frame} follows {frames[-1]}",
                )
            if isinstance(value, Sequence | np.ndarray) and not isinstance(value, str):
                names = ("x", "y")
                if len(value) != 2:
                    raise FieldError(f"keyframes[{i}]", f"a point needs 2 numbers (x, y), got {len(value)}")
                row = [check_number(v, f"keyframes[{i}].{n}") for v, n in zip(value, names, strict=True)]
            else:
                row = [check_number(value, f"keyframes[{i}].value")]
            if dims is not None and len(row) != dims:
                raise FieldError(f"keyframes[{i}]", "mixes scalar and point keyframes")
            dims = len(row)
            frames.append(frame)
            rows.append(row)
        object.__setattr__(self, "frames", tuple(frames))
        object.__setattr__(self, "values", np.asarray(rows, dtype=np.float64))
        object.__setattr__(self, "interpolation", interpolation)

    @classmethod
    def constant(cls, value: float | Sequence[float]) -> Trajectory:
        """The same value in every frame."""
        return cls([(0, value)])

    @classmethod
    def parse(cls, specs: Sequence[str], interpolation: Interpolation = "linear") -> Trajectory:
        """Keyframes written `FRAME:X,Y` (points) or `FRAME:VALUE` (scalars), e.g. ["0:10,10", "15:50,40"]."""
        return cls([parse_keyframe(spec, i) for i, spec in enumerate(specs)], interpolation)

    @property
    def dims(self) -> int:
        return int(self.values.shape[1])

    @property
    def first_frame(self) -> int:
        return self.frames[0]

    @property
    def last_frame(self) -> int:
        return self.frames[-1]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Trajectory):
            return NotImplemented
        return (
            self.frames == other.frames
            and self.interpolation == other.interpolation
            and np.array_equal(self.values, other.values)
        )

    def __hash__(self) -> int:
        return hash((self.frames, self.interpolation, self.values.tobytes()))

    def check_frames(self, num_frames: int, field: str) -> None:
        """FieldError (at `field.keyframes[i].frame_index`) for a keyframe at or past `num_frames`."""
        for i, frame in enumerate(self.frames):
            if frame >= num_frames:
                raise FieldError(
                    f"{field}.keyframes[{i}].frame_index",
                    f"frame {frame} is out of range: the sequence has {num_frames} frames (0..{num_frames - 1})",
                )

    def check_values(self, field: str, *, minimum: float | None = None, maximum: float | None = None,
                     positive: bool = False) -> None:  # fmt: skip
        """FieldError (at `field.keyframes[i].value`) for a keyframe value outside the given bounds."""
        for i, row in enumerate(self.values):
            for value in row:
                where = f"{field}.keyframes[{i}].value"
                if positive and value <= 0:
                    raise FieldError(where, f"must be > 0, got {value:g}")
                if minimum is not None and value < minimum:
                    raise FieldError(where, f"must be >= {minimum:g}, got {value:g}")
                if maximum is not None and value > maximum:
                    raise FieldError(where, f"must be <= {maximum:g}, got {value:g}")

    def sample(self, frames: int | Sequence[int] | np.ndarray) -> np.ndarray:
        """Values at `frames` (an int n means frames 0..n-1): (N,) for scalars, (N, 2) for points."""
        t = np.arange(frames, dtype=np.float64) if isinstance(frames, int) else np.asarray(frames, np.float64)
        out = np.stack([self._interpolate(t, self.values[:, d]) for d in range(self.dims)], axis=-1)
        return out[:, 0] if self.dims == 1 else out

    def at(self, frame: int) -> float | np.ndarray:
        """The value at one frame: a float for scalars, an (x, y) array for points."""
        value = self.sample([frame])[0]
        return float(value) if self.dims == 1 else value

    def _interpolate(self, t: np.ndarray, v: np.ndarray) -> np.ndarray:
        knots = np.asarray(self.frames, dtype=np.float64)
        if len(knots) == 1:
            return np.full(t.shape, v[0])
        if self.interpolation == "linear":
            return np.interp(t, knots, v)
        k = np.clip(np.searchsorted(knots, t, side="right") - 1, 0, len(knots) - 2)
        if self.interpolation == "step":
            return np.where(t >= knots[-1], v[-1], np.where(t < knots[0], v[0], v[k]))
        # smooth: cubic Hermite with Catmull-Rom (finite-difference) tangents
        slopes = np.empty_like(v)
        slopes[1:-1] = (v[2:] - v[:-2]) / (knots[2:] - knots[:-2])
        slopes[0] = (v[1] - v[0]) / (knots[1] - knots[0])
        slopes[-1] = (v[-1] - v[-2]) / (knots[-1] - knots[-2])
        span = knots[k + 1] - knots[k]
        s = np.clip((t - knots[k]) / span, 0.0, 1.0)
        h00 = 2 * s**3 - 3 * s**2 + 1
        h10 = s**3 - 2 * s**2 + s
        h01 = -2 * s**3 + 3 * s**2
        h11 = s**3 - s**2
        return h00 * v[k] + h10 * span * slopes[k] + h01 * v[k + 1] + h11 * span * slopes[k + 1]


def parse_keyframe(spec: str, index: int = 0) -> tuple[int, float | tuple[float, float]]:
    """One keyframe written `FRAME:X,Y` or `FRAME:VALUE`; FieldError naming `keyframes[index]` otherwise."""
    field = f"keyframes[{index}]"
    frame_text, sep, value_text = str(spec).partition(":")
    if not sep or not frame_text.strip() or not value_text.strip():
        raise FieldError(field, f"expected FRAME:X,Y or FRAME:VALUE, got {spec!r}")
    try:
        frame = int(frame_text)
    except ValueError:
        raise FieldError(f"{field}.frame_index", f"frame must be an integer, got {frame_text!r}") from None
    parts = value_text.split(",")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise FieldError(field, f"values must be numbers, got {value_text!r} in {spec!r}") from None
    if len(numbers) == 1:
        return frame, numbers[0]
    if len(numbers) == 2:
        return frame, (numbers[0], numbers[1])
    raise FieldError(field, f"expected one value or two (x,y), got {len(numbers)} in {spec!r}")
