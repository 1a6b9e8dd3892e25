"""Pure policy: (stored state, now, settings) -> decision and new state, never I/O.

Nothing here reads the clock, sleeps, logs or touches the database or the network; the
orchestrator loads state, calls these functions with `now`, and stores what they return.

- token_health: when to refresh, the verdict a refresh or auth error gives, reconnect notices.
- breaker: the per-(user, integration) circuit breaker's transitions.
- schedule: when a pair is due and how each outcome moves `next_sync_at`.
- routing: where each class of Google error goes.
- savings: the estimate of API calls an attempt saved, and which mechanism saved them.
"""
