"""The database schema and its forward-only migrations (the only place tables are defined)."""

from __future__ import annotations

ROLLUP_TABLE = "sync_metrics_hourly"

SCHEMA_V1 = """
        CREATE TABLE users (
            id TEXT PRIMARY KEY,
            email TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE user_integrations (
            user_id TEXT NOT NULL REFERENCES users(id),
            integration_type TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (user_id, integration_type)
        );
        CREATE TABLE credentials (
            user_id TEXT PRIMARY KEY REFERENCES users(id),
            client_id TEXT NOT NULL,
            client_secret TEXT NOT NULL,
            refresh_token TEXT NOT NULL,
            access_token TEXT,
            token_expiry TEXT,
            scopes TEXT NOT NULL DEFAULT '[]',
            updated_at TEXT NOT NULL
        );
        CREATE TABLE token_health (
            user_id TEXT NOT NULL,
            integration_type TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'unknown',
            last_checked TEXT,
            error_message TEXT,
            PRIMARY KEY (user_id, integration_type)
        );
        CREATE INDEX idx_token_health_status ON token_health(status);
        CREATE TABLE circuit_breaker_state (
            user_id TEXT NOT NULL,
            integration_type TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'closed',
            failure_count INTEGER NOT NULL DEFAULT 0,
            last_failure_at TEXT,
            last_failure_reason TEXT,
            opened_at TEXT,
            next_retry_at TEXT,
            PRIMARY KEY (user_id, integration_type)
        );
        CREATE INDEX idx_breaker_state ON circuit_breaker_state(state);
        CREATE TABLE sync_schedule (
            user_id TEXT NOT NULL,
            integration_type TEXT NOT NULL,
            default_frequency_seconds INTEGER NOT NULL,
            current_frequency_seconds INTEGER NOT NULL,
            consecutive_no_changes INTEGER NOT NULL DEFAULT 0,
            last_sync_at TEXT,
            next_sync_at TEXT NOT NULL,
            pending_trigger TEXT,
            PRIMARY KEY (user_id, integration_type)
        );
        CREATE INDEX idx_sync_schedule_next ON sync_schedule(next_sync_at);
        CREATE TABLE sync_metrics (
            id INTEGER PRIMARY KEY,
            user_id TEXT NOT NULL,
            integration_type TEXT NOT NULL,
            sync_type TEXT,
            trigger TEXT NOT NULL,
            result TEXT NOT NULL,
            skip_reason TEXT,
            duration_ms INTEGER NOT NULL DEFAULT 0,
            items_processed INTEGER NOT NULL DEFAULT 0,
            items_added INTEGER NOT NULL DEFAULT 0,
            items_updated INTEGER NOT NULL DEFAULT 0,
            items_deleted INTEGER NOT NULL DEFAULT 0,
            full_resync INTEGER NOT NULL DEFAULT 0,
            breaker_trial INTEGER NOT NULL DEFAULT 0,
            api_calls_made INTEGER NOT NULL DEFAULT 0,
            api_calls_saved INTEGER NOT NULL DEFAULT 0,
            saved_by TEXT,
            error_class TEXT,
            error_message TEXT,
            created_at TEXT NOT NULL
        );
        CREATE INDEX idx_sync_metrics_created ON sync_metrics(created_at);
        CREATE INDEX idx_sync_metrics_user ON sync_metrics(user_id, integration_type, created_at);
        CREATE TABLE notifications (
            id INTEGER PRIMARY KEY,
            user_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            message TEXT NOT NULL,
            created_at TEXT NOT NULL,
            resolved_at TEXT
        );
        CREATE INDEX idx_notifications_open ON notifications(user_id, kind, resolved_at);
        CREATE TABLE sync_tokens (
            user_id TEXT NOT NULL,
            integration_type TEXT NOT NULL,
            scope TEXT NOT NULL,
            token TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (user_id, integration_type, scope)
        );
        CREATE TABLE contacts (
            user_id TEXT NOT NULL,
            resource_name TEXT NOT NULL,
            etag TEXT,
            display_name TEXT,
            emails TEXT NOT NULL DEFAULT '[]',
            phones TEXT NOT NULL DEFAULT '[]',
            organizations TEXT NOT NULL DEFAULT '[]',
            birthdays TEXT NOT NULL DEFAULT '[]',
            addresses TEXT NOT NULL DEFAULT '[]',
            biographies TEXT NOT NULL DEFAULT '[]',
            memberships TEXT NOT NULL DEFAULT '[]',
            updated TEXT,
            sync_generation INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (user_id, resource_name)
        );
        CREATE TABLE contact_groups (
            user_id TEXT NOT NULL,
            resource_name TEXT NOT NULL,
            etag TEXT,
            name TEXT,
            group_type TEXT,
            member_count INTEGER,
            updated TEXT,
            sync_generation INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (user_id, resource_name)
        );
        CREATE TABLE calendars (
            user_id TEXT NOT NULL,
            calendar_id TEXT NOT NULL,
            etag TEXT,
            summary TEXT,
            time_zone TEXT,
            access_role TEXT,
            is_primary INTEGER NOT NULL DEFAULT 0,
            sync_generation INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (user_id, calendar_id)
        );
        CREATE TABLE calendar_events (
            user_id TEXT NOT NULL,
            calendar_id TEXT NOT NULL,
            event_id TEXT NOT NULL,
            etag TEXT,
            status TEXT,
            summary TEXT,
            start TEXT,
            "end" TEXT,
            updated TEXT,
            recurring_event_id TEXT,
            ical_uid TEXT,
            sync_generation INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (user_id, calendar_id, event_id)
        );
        CREATE TABLE webhook_channels (
            channel_id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            calendar_id TEXT NOT NULL,
            resource_id TEXT NOT NULL,
            token TEXT NOT NULL,
            address TEXT NOT NULL,
            expiration TEXT NOT NULL,
            created_at TEXT NOT NULL,
            stopped_at TEXT
        );
        CREATE INDEX idx_webhook_channels_user ON webhook_channels(user_id, calendar_id);
"""


_ROLLUP_KEY = (
    "substr({row}.created_at, 1, 13), {row}.integration_type, {row}.trigger, {row}.result,"
    " coalesce({row}.skip_reason, ''), coalesce({row}.saved_by, ''),"
    " coalesce({row}.error_class, '')"
)
_ROLLUP_MATCH = (
    "hour = substr(OLD.created_at, 1, 13) AND integration_type = OLD.integration_type"
    " AND trigger = OLD.trigger AND result = OLD.result"
    " AND skip_reason = coalesce(OLD.skip_reason, '') AND saved_by = coalesce(OLD.saved_by, '')"
    " AND error_class = coalesce(OLD.error_class, '')"
)
_ROLLUP_ADD = (
    f"INSERT INTO {ROLLUP_TABLE} VALUES ({_ROLLUP_KEY.format(row='NEW')}, 1,"
    " NEW.api_calls_made, NEW.api_calls_saved, NEW.full_resync, NEW.items_processed)"
    " ON CONFLICT (hour, integration_type, trigger, result, skip_reason, saved_by, error_class)"
    " DO UPDATE SET attempts = attempts + 1,"
    " api_calls_made = api_calls_made + excluded.api_calls_made,"
    " api_calls_saved = api_calls_saved + excluded.api_calls_saved,"
    " full_resyncs = full_resyncs + excluded.full_resyncs,"
    " items_processed = items_processed + excluded.items_processed;"
)
_ROLLUP_REMOVE = (
    f"UPDATE {ROLLUP_TABLE} SET attempts = attempts - 1,"
    " api_calls_made = api_calls_made - OLD.api_calls_made,"
    " api_calls_saved = api_calls_saved - OLD.api_calls_saved,"
    " full_resyncs = full_resyncs - OLD.full_resync,"
    f" items_processed = items_processed - OLD.items_processed WHERE {_ROLLUP_MATCH};"
)
ROLLUP_BACKFILL = (
    f"INSERT INTO {ROLLUP_TABLE} SELECT {_ROLLUP_KEY.format(row='sync_metrics')}, count(*),"
    " sum(api_calls_made), sum(api_calls_saved), sum(full_resync), sum(items_processed)"
    " FROM sync_metrics GROUP BY 1, 2, 3, 4, 5, 6, 7;"
)
# Schema migration v2. Triggers keep the rollup exact whoever writes
# sync_metrics; the last statement backfills the rows a v1 database already had.
ROLLUP_MIGRATION = f"""
CREATE TABLE {ROLLUP_TABLE} (
    hour TEXT NOT NULL,
    integration_type TEXT NOT NULL,
    trigger TEXT NOT NULL,
    result TEXT NOT NULL,
    skip_reason TEXT NOT NULL,
    saved_by TEXT NOT NULL,
    error_class TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    api_calls_made INTEGER NOT NULL,
    api_calls_saved INTEGER NOT NULL,
    full_resyncs INTEGER NOT NULL,
    items_processed INTEGER NOT NULL,
    PRIMARY KEY (hour, integration_type, trigger, result, skip_reason, saved_by, error_class)
) WITHOUT ROWID;
CREATE TRIGGER sync_metrics_rollup_insert AFTER INSERT ON sync_metrics BEGIN
    {_ROLLUP_ADD}
END;
CREATE TRIGGER sync_metrics_rollup_delete AFTER DELETE ON sync_metrics BEGIN
    {_ROLLUP_REMOVE}
END;
CREATE TRIGGER sync_metrics_rollup_update AFTER UPDATE ON sync_metrics BEGIN
    {_ROLLUP_REMOVE}
    {_ROLLUP_ADD}
END;
{ROLLUP_BACKFILL}
"""


# v3: the key check of secrets at rest (store/secrets.py): one Fernet token of a known text.
SECRETS_MIGRATION = """
CREATE TABLE secret_key_check (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    token TEXT NOT NULL
);
"""


# The fleet breaker per Google API (rev 2; syncctl.policy.fleet_breaker).
FLEET_BREAKER_MIGRATION = """
CREATE TABLE fleet_breaker (
    api TEXT PRIMARY KEY,
    state TEXT NOT NULL DEFAULT 'closed',
    window_started_at TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    transient_failures INTEGER NOT NULL DEFAULT 0,
    opened_at TEXT,
    last_probe_at TEXT,
    last_failure_reason TEXT
);
"""


# The quota budget's requests per API per whole second (store/quota.py), and the pairs whose
# sync the mass-delete guard held (store/holds.py).
FLEET_MIGRATION = """
        CREATE TABLE quota_usage (
            api TEXT NOT NULL,
            second INTEGER NOT NULL,
            used INTEGER NOT NULL,
            PRIMARY KEY (api, second)
        ) WITHOUT ROWID;

        CREATE TABLE mass_delete_holds (
            user_id TEXT NOT NULL,
            integration_type TEXT NOT NULL,
            mirror TEXT NOT NULL,
            mirrored INTEGER NOT NULL,
            deleting INTEGER NOT NULL,
            held_at TEXT NOT NULL,
            PRIMARY KEY (user_id, integration_type)
        );
"""


# Per-pair sync leases (SPEC 5, 7): who syncs a pair right now, and until when.
LEASES_MIGRATION = """
        CREATE TABLE sync_leases (
            user_id TEXT NOT NULL,
            integration_type TEXT NOT NULL,
            holder TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            PRIMARY KEY (user_id, integration_type)
        );
"""


# Of each attempt's calls, its watch-channel upkeep (events.watch, channels.stop; a naive poll
# sends none) and its token refreshes (a naive poll sends its own): policy/savings.py prices a
# naive poll from the rest.
OVERHEAD_CALLS_MIGRATION = """
        ALTER TABLE sync_metrics ADD COLUMN overhead_calls INTEGER NOT NULL DEFAULT 0;
"""


# A calendar sync that did not request the calendar list (within the list's own cadence, or a
# notified sync): the naive poller would have (policy.savings prices it). The fleet breaker's
# rolling run of transient failures in a row across runs (policy.fleet_breaker).
CALENDAR_LIST_SKIPPED_MIGRATION = """
        ALTER TABLE sync_metrics ADD COLUMN calendar_list_skipped INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE fleet_breaker ADD COLUMN consecutive_failures INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE fleet_breaker ADD COLUMN last_evidence_at TEXT;
"""


# The leases again, keyed by their primary key alone (WITHOUT ROWID): every attempt inserts and
# deletes its pair's row, and a rowid table writes a second b-tree (its key index) each time.
# The rows are carried over, so a lease held across the upgrade stays held.
LEASES_WITHOUT_ROWID_MIGRATION = """
        CREATE TABLE sync_leases_keyed (
            user_id TEXT NOT NULL,
            integration_type TEXT NOT NULL,
            holder TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            PRIMARY KEY (user_id, integration_type)
        ) WITHOUT ROWID;
        INSERT INTO sync_leases_keyed (user_id, integration_type, holder, expires_at)
            SELECT user_id, integration_type, holder, expires_at FROM sync_leases;
        DROP TABLE sync_leases;
        ALTER TABLE sync_leases_keyed RENAME TO sync_leases;
"""


# Forward-only migrations: MIGRATIONS[n] is the SQL that takes version n to n + 1.
# v2: the hourly rollup of sync_metrics that keeps `syncctl report` fast over a year of rows.
# v3: the key check of secrets at rest. v4: the fleet breaker per Google API. v5: the quota
# budget's per-second counts and the mass-delete guard's held pairs. v6: leases. v7: the
# channel-upkeep and token-refresh calls of each attempt. v8: sync_metrics.calendar_list_skipped;
# fleet_breaker's failures in a row. v9: the leases WITHOUT ROWID.
MIGRATIONS: list[str] = [
    SCHEMA_V1,
    ROLLUP_MIGRATION,
    SECRETS_MIGRATION,
    FLEET_BREAKER_MIGRATION,
    FLEET_MIGRATION,
    LEASES_MIGRATION,
    OVERHEAD_CALLS_MIGRATION,
    CALENDAR_LIST_SKIPPED_MIGRATION,
    LEASES_WITHOUT_ROWID_MIGRATION,
]
SCHEMA_VERSION = len(MIGRATIONS)
