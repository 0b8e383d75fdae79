"""Response pieces that several endpoints share, typed exactly as the official SDK parses them."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Wire(BaseModel):
    """Base for response models: unknown keys ignored (as the SDK does), None fields never sent."""

    model_config = ConfigDict(extra="ignore")

    def to_wire(self) -> dict:
        return self.model_dump(mode="json", exclude_none=True)


class I18n(Wire):
    zh: str
    en: str


class BoxFloat(Wire):
    width: float
    height: float
    top_left_x: float
    top_left_y: float


class BoxInt(Wire):
    """media-tagging(-det) boxes: the SDK types these as int and raises on a string."""

    width: int
    height: int
    top_left_x: int
    top_left_y: int


class InstanceFloat(Wire):
    bounding_box: BoxFloat
    confidence: str


class InstanceInt(Wire):
    bounding_box: BoxInt
    confidence: str
