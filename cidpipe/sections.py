"""Base class shared by every recipe section: unknown keys are errors, not silently ignored."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, SerializationInfo

# model_dump(context=DISPLAY): the recipe as a user reads it (`recipes show`, runs/<name>/recipe.yaml), every
# key at its value. Without it, the sections' serializers leave keys added later out at their defaults, so
# the stage ids hashed from the dump stay what they were (a display dump validates back to the same ids).
DISPLAY = {"display": True}


def for_display(info: SerializationInfo) -> bool:
    return bool(info.context and info.context.get("display"))


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
