"""The base of every config section (unknown keys are errors, assignments are validated) and the config error."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ConfigError(ValueError):
    """One line naming the file (or --set item) and the offending key."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
