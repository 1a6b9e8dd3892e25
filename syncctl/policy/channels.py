"""Watch-channel upkeep (SPEC 5): which channels to open, stop, or let lapse, decided purely.

Choices where the contract is silent, each to save a Google call:
- A channel is *current* when it points at today's `SYNCCTL_WEBHOOK_URL` and lives past
  `now + webhook_renew_before_seconds`. A calendar without one gets a new channel, asked for
  the longest TTL Google grants (7 days).
- Renewal is just in time: a channel is renewed only once it is within the renewal margin of
  its expiry, and `renew_by` tells the schedule to sync again before the earliest current
  channel enters that margin, so each channel is watched once per TTL, not once per sync.
- A superseded channel (same address, inside the margin, a replacement open) is not stopped:
  it lapses on its own within the margin. Stopping it would cost one request per renewal;
  letting it lapse costs at most a duplicate notification, which the receiver coalesces with
  the new channel's into the same sync (zero extra calls; see tests/test_receiver.py).
- Channels that would keep pushing for days are stopped: a removed calendar's, every channel
  when no webhook URL is set, a duplicate that lives as long as the kept one, and one aimed
  at an old address (only after its replacement is open, so pushes overlap, never pause).
- Expired channels are forgotten without a call: Google has already dropped them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from syncctl.config import Settings

CHANNEL_TTL_SECONDS = 604800  # Google's default and the longest a Calendar channel is known to live


@dataclass(frozen=True)
class ChannelState:
    """What the plan needs of one stored, unstopped channel."""

    channel_id: str
    calendar_id: str
    address: str
    expiration: datetime


@dataclass(frozen=True)
class ChannelPlan:
    """The upkeep to do for one user, in order: forget, open, stop."""

    forget: tuple[str, ...] = ()  # expired channel ids: mark stopped, no Google call
    open: tuple[str, ...] = ()  # calendar ids that need a new channel
    stop: tuple[str, ...] = ()  # channel ids to stop at Google now
    stop_if_replaced: dict[str, tuple[str, ...]] = field(default_factory=dict)  # by calendar
    lapse: tuple[str, ...] = ()  # superseded channel ids left to expire on their own


def plan_channels(
    channels: Iterable[ChannelState],
    calendars: Collection[str],
    address: str | None,
    now: datetime,
    settings: Settings,
) -> ChannelPlan:
    """Give each mirrored calendar one current channel at `address`, with the fewest calls."""
    margin = now + timedelta(seconds=settings.webhook_renew_before_seconds)
    forget: list[str] = []
    stop: list[str] = []
    moved: dict[str, list[str]] = {}
    lapse: list[str] = []
    current: dict[str, ChannelState] = {}
    for channel in sorted(channels, key=lambda c: (c.expiration, c.channel_id)):
        if channel.expiration <= now:
            forget.append(channel.channel_id)
        elif address is None or channel.calendar_id not in calendars:
            stop.append(channel.channel_id)
        elif channel.address != address:
            moved.setdefault(channel.calendar_id, []).append(channel.channel_id)
        elif channel.expiration <= margin:
            lapse.append(channel.channel_id)
        else:
            older = current.get(channel.calendar_id)
            if older is not None:  # a live duplicate: keep the one that lasts longest
                stop.append(older.channel_id)
            current[channel.calendar_id] = channel
    opening = () if address is None else tuple(sorted(set(calendars) - current.keys()))
    for calendar_id in list(moved):
        if calendar_id not in opening:  # already covered at the new address: stop at once
            stop.extend(moved.pop(calendar_id))
    return ChannelPlan(
        forget=tuple(forget),
        open=opening,
        stop=tuple(stop),
        stop_if_replaced={k: tuple(v) for k, v in moved.items()},
        lapse=tuple(lapse),
    )


def renew_by(expirations: Sequence[datetime], settings: Settings) -> datetime | None:
    """When the next sync must run to renew in time: the earliest expiry minus the margin."""
    if not expirations:
        return None
    return min(expirations) - timedelta(seconds=settings.webhook_renew_before_seconds)


def upkeep_needed(address: str | None, open_channels: bool) -> bool:
    """Upkeep has work only with a webhook address (channels to open or keep) or with channels
    not yet stopped (to stop or forget); otherwise it makes no call and changes nothing."""
    return address is not None or open_channels
