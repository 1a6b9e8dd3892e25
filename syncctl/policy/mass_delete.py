"""The mass-delete guard (SPEC 3): whether a sync's deletions are applied or held."""

from __future__ import annotations

from dataclasses import dataclass

from syncctl.config import Settings
from syncctl.model import MASS_DELETE_NOTICE, Integration, MassDeleteHold, Notice


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


def after_attempt(
    held: Deletions | None, *, was_held: bool, synced: bool
) -> tuple[MassDeleteHold | None, bool]:
    """A held attempt records its hold; a pair that synced without being held loses its hold
    (the operator applied or re-fetched); anything else leaves it as it is."""
    if held is not None:
        return MassDeleteHold(held.mirror, held.mirrored, held.deleting), False
    return None, was_held and synced


def held_notice(
    user_id: str, integration: Integration, held: Deletions, *, notice_open: bool
) -> Notice | None:
    """One notice a user for held syncs (None while one is open), saying how to act."""
    if notice_open:
        return None
    flag = f"--user {user_id} --integration {integration.cli_name}"
    return Notice(
        MASS_DELETE_NOTICE,
        f"{integration.cli_name}: a sync would delete {held.deleting} of {held.mirrored}"
        f" mirrored {held.mirror}; held. Run `syncctl sync {flag} --allow-mass-delete` to"
        f" apply, or `syncctl sync {flag} --full` to re-fetch",
    )
