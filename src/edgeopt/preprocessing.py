"""The input convention a user declares for their model: size, channel order, value range, normalization.

One definition for both frameworks, the CLI, the API (``ExperimentCreate.preprocessing``), the stored experiment and
the report. Models trained elsewhere expect their own convention: torchvision's ImageNet models take RGB in 0..1
normalized with ImageNet's mean and std, many Caffe-era and OpenCV pipelines BGR in 0..255. EdgeOpt feeds the
baseline and every technique (calibration, fine-tuning, evaluation) the same converted images
(``edgeopt.data.adapt``), so a declared convention changes every figure alike.

Dataset images arrive as RGB (or grey) floats in 0..1. The conversion is, in order: resize to the model's input,
scale to the declared value range, reorder channels, then ``(x - mean) / std`` with mean and std expressed in that
value range.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PresetName = Literal["none", "imagenet", "cifar", "custom"]

# Per-channel (mean, std) in RGB order and the 0..1 range; the values torchvision and the CIFAR reference code use.
PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "cifar": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}
PRESET_TITLES: dict[str, str] = {
    "none": "No normalization",
    "imagenet": "ImageNet mean/std",
    "cifar": "CIFAR mean/std",
    "custom": "Custom mean/std",
}
VALUE_SCALE = {"0-1": 1.0, "0-255": 255.0}


class Preprocessing(BaseModel):
    """What the model expects as input; ``None`` fields mean "the model's own" (size) or "as is"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: PresetName = Field(
        default="none",
        description="none: no normalization; imagenet / cifar: that dataset's per-channel mean and std; "
        "custom: the mean and std given here.",
    )
    input_size: list[int] | None = Field(
        default=None,
        min_length=2,
        max_length=2,
        description="Height and width the model takes; empty means the model's own input size.",
    )
    channel_order: Literal["rgb", "bgr"] = Field(default="rgb", description="Order of the colour channels.")
    value_range: Literal["0-1", "0-255"] = Field(default="0-1", description="Pixel values the model was trained on.")
    mean: list[float] | None = Field(default=None, description="Per-channel mean (custom preset), in the value range.")
    std: list[float] | None = Field(default=None, description="Per-channel std (custom preset), in the value range.")

    @model_validator(mode="after")
    def _consistent(self) -> Preprocessing:
        if self.input_size is not None and (min(self.input_size) < 8 or max(self.input_size) > 1024):
            raise ValueError(f"input_size {self.input_size[0]}x{self.input_size[1]} must be 8 to 1024 pixels a side")
        if self.preset == "custom":
            if self.mean is None or self.std is None:
                raise ValueError("the custom preset needs both mean and std, one number per channel")
            if len(self.mean) != len(self.std) or len(self.mean) not in (1, 3):
                raise ValueError(
                    f"mean and std need one number per channel (1 or 3 each); got {len(self.mean)} and {len(self.std)}"
                )
            if any(s <= 0 for s in self.std):
                raise ValueError("every std must be positive")
        elif self.mean is not None or self.std is not None:
            raise ValueError(f"mean and std are set by the {self.preset!r} preset; choose preset 'custom' to give them")
        return self

    def normalization(self) -> tuple[list[float], list[float]] | None:
        """(mean, std) in the declared value range, or None for no normalization."""
        scale = VALUE_SCALE[self.value_range]
        if self.preset == "custom":
            return list(self.mean or ()), list(self.std or ())
        if self.preset in PRESETS:
            mean, std = PRESETS[self.preset]
            if self.channel_order == "bgr":
                mean, std = mean[::-1], std[::-1]
            return [m * scale for m in mean], [s * scale for s in std]
        return None

    def describe(self) -> str:
        """One line for reports and the CLI, e.g. "224x224, RGB, 0..1, ImageNet mean/std"."""
        size = f"{self.input_size[0]}x{self.input_size[1]}" if self.input_size else "the model's input size"
        low, high = self.value_range.split("-")
        return f"{size}, {self.channel_order.upper()}, {low}..{high}, {PRESET_TITLES[self.preset]}"
