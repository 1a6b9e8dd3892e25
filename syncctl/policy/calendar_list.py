"""When a calendar sync lists the user's calendar list (one calendarList.list request, or more
with pages) before the calendars' events.

The naive poller lists it on every poll. Calendars come and go far less often than events
change, so a scheduled (or webhook-triggered) sync lists it only when its last listing is at
least `calendar_list_refresh_seconds` old (default 24 hours), and otherwise lists only the
events of the calendars already mirrored. What that costs: a calendar added to (or removed
from, hidden in, downgraded in) the list is noticed up to that much later. A mirrored calendar
deleted at Google is noticed at once all the same: its events.list answers 404 and it is removed.
A first sync, a `--full` sync and a manual sync always list it (an operator who asks for a sync
expects everything fresh); so does every sync with the setting at 0.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from syncctl.config import Settings
from syncctl.model import Trigger


def lists_calendar_list(
    last_listed_at: datetime | None,
    now: datetime,
    settings: Settings,
    *,
    trigger: Trigger,
    full: bool = False,
) -> bool:
    """Whether this calendar sync lists the calendar list: never listed, full, manual, or the
    last listing is `calendar_list_refresh_seconds` old or older."""
    if last_listed_at is None or full or trigger is Trigger.MANUAL:
        return True
    return now - last_listed_at >= timedelta(seconds=settings.calendar_list_refresh_seconds)
