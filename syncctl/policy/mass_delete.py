"""The mass-delete guard (SPEC 3): whether a sync's deletions are applied or held."""

from __future__ import annotations

from dataclasses import dataclass

from syncctl.config import Settings


@dataclass(frozen=True)
class Deletions:
    """What a sync would delete from one mirror: a user's contacts, or one calendar's events."""

    mirror: str  # "contacts" or "calendar <id>": named in the notice
    mirrored: int  # rows the mirror held before this sync
    deleting: int  # of those, rows the sync would delete


def hold_deletions(deletions: Deletions, settings: Settings, *, allowed: bool = False) -> bool:
    """Hold a sync that would delete more than `mass_delete_share` of a mirror and at least
    `mass_delete_min_items` rows of it, unless an operator allowed it (`--allow-mass-delete`)."""
    if allowed or deletions.deleting < settings.mass_delete_min_items:
        return False
    return deletions.deleting > settings.mass_delete_share * deletions.mirrored


def may_sync_held_pair(held: bool, *, allow_mass_delete: bool, full: bool) -> bool:
    """A pair whose sync was held makes no Google call until an operator applies its deletions
    (`sync --allow-mass-delete`) or re-fetches (`sync --full`, held again if they persist)."""
    return not held or allow_mass_delete or full
