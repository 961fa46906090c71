"""Request bodies more than one router takes."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

from closeloop_common.events import EMAIL_PATTERN


class Body(BaseModel):
    """A request body that refuses fields it does not know."""

    model_config = ConfigDict(extra="forbid")


class OwnerBody(Body):
    """Who is responsible (a structural issue, an account action): not necessarily a member of a
    team, so only the id is required."""

    id: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"\S")]
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    email: Annotated[str, StringConstraints(max_length=320, pattern=EMAIL_PATTERN)] | None = None
