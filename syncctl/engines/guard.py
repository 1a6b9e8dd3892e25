"""The engines' side of the mass-delete guard (SPEC 3): how a guarded scope asks, and is held."""

from __future__ import annotations

from collections.abc import Callable

from syncctl.policy.mass_delete import Deletions

# Asked at the end of a guarded scope's sync, before any of its deletions is applied: True
# holds them (the orchestrator builds it from policy.mass_delete.hold_deletions and settings).
DeletionGuard = Callable[[Deletions], bool]


class MassDeleteHeld(Exception):
    """A sync would delete too much of a mirror: nothing was deleted and no sync token moved."""

    def __init__(self, deletions: Deletions) -> None:
        super().__init__(
            f"held: the sync would delete {deletions.deleting} of {deletions.mirrored}"
            f" mirrored {deletions.mirror}"
        )
        self.deletions = deletions
