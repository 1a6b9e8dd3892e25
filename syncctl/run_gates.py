"""What one run-due learns about Google as it goes: the fleet breakers per API (policy.fleet)
and the OAuth clients Google refused. Thread-safe; the decisions are the policy's."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, fields
from datetime import datetime

from syncctl.clock import from_stored, to_iso
from syncctl.config import Settings
from syncctl.model import BreakerState, Integration
from syncctl.policy import fleet_breaker as fleet
from syncctl.policy.fleet_breaker import Api, Evidence, FleetGate, FleetRecord


@dataclass(frozen=True)
class Admission:
    """Whether a due pair starts in this run, and the APIs it probes if it is a probe."""

    gate: FleetGate
    probes: tuple[Api, ...] = ()
    reason: str | None = None  # why it is held


class RunGates:
    """The fleet breakers and refused clients of one run-due."""

    def __init__(self, rows: list[dict], *, now: datetime, settings: Settings) -> None:
        self._lock = threading.Lock()
        self.now = now  # the run's start: when each open breaker's probe is due is judged at it
        self.settings = settings
        self._stored = rows  # as loaded: only rows that differ are saved (changed)
        self.records: dict[Api, FleetRecord] = {api: FleetRecord(api) for api in Api}
        for row in rows:
            record = record_from_row(row)
            if record is not None:
                self.records[record.api] = record
        self.was_open = {api for api, r in self.records.items() if r.is_open}
        self.probed: set[Api] = set()
        self.refused_clients: dict[str, str] = {}  # client id -> the message, reported once
        self.held: Counter[str] = Counter()  # pairs not started, by why

    def admit(self, integration: Integration, client_id: str | None) -> Admission:
        """RUN, PROBE (this attempt is the run's probe of an open API) or HOLD."""
        with self._lock:
            if client_id is not None and client_id in self.refused_clients:
                self.held["client refused"] += 1
                return Admission(FleetGate.HOLD, reason="client refused")
            decision, probes = self._gate(integration)
            if decision is FleetGate.PROBE:
                self.probed.update(probes)
            elif decision is FleetGate.HOLD:
                self.held["fleet breaker open"] += 1
                return Admission(FleetGate.HOLD, reason="fleet breaker open")
            return Admission(decision, probes)

    def wants_probe(self, integration: Integration) -> bool:
        """Whether a pair of this integration would be a probe now (without claiming it)."""
        with self._lock:
            decision, _ = self._gate(integration)
            return decision is FleetGate.PROBE

    def _gate(self, integration: Integration) -> tuple[FleetGate, tuple[Api, ...]]:
        return fleet.gate(
            integration, self.records, frozenset(self.probed), self.now, self.settings
        )

    def record(
        self,
        evidence: list[Evidence],
        probes: tuple[Api, ...],
        now: datetime,
        settings,
        *,
        refused_client: tuple[str, str] | None = None,
    ) -> None:
        """Add an attempt's evidence; a probe's result opens or closes the APIs it probed."""
        with self._lock:
            if probes and not evidence:
                # The probe was gated before it reached Google (a revoked grant, an open pair
                # breaker): it proved nothing, so the next due pair probes instead.
                self.probed.difference_update(probes)
                probes = ()
            for api in probes:
                found = next((e for e in evidence if e.api is api), None)
                self.records[api] = fleet.on_probe(self.records[api], found, now)
            for item in evidence:
                if item.api in probes:
                    continue
                before = self.records[item.api]
                after = fleet.observe(before, item, now, settings)
                if after.is_open and not before.is_open:
                    # Tripped: nothing more is started against it in this run.
                    self.probed.add(item.api)
                self.records[item.api] = after
            if refused_client is not None:
                self.refused_clients.setdefault(*refused_client)

    def open_apis(self) -> list[Api]:
        """The APIs whose fleet breaker is open now."""
        with self._lock:
            return [api for api, record in self.records.items() if record.is_open]

    def rows(self) -> list[dict]:
        """The fleet breakers as rows to store."""
        with self._lock:
            return [record_to_row(record) for record in self.records.values()]

    def changed(self) -> list[dict]:
        """The rows to save at the end of the run: those that differ from the stored ones."""
        return changed_rows(self._stored, self.rows())


def changed_rows(stored: list[dict], rows: list[dict]) -> list[dict]:
    """The rows that differ from the stored row of their API (or have none): saving only those
    leaves the table as saving every row would."""
    by_api = {row.get("api"): row for row in stored}
    return [row for row in rows if by_api.get(row["api"]) != row]


_TIMES = ("window_started_at", "opened_at", "last_probe_at", "last_evidence_at")


def record_from_row(row: dict) -> FleetRecord | None:
    """A stored row as a FleetRecord (None for an API this version does not know)."""
    try:
        api = Api(row["api"])
    except ValueError:
        return None
    values = {f.name: row.get(f.name) for f in fields(FleetRecord)}
    values["api"] = api
    values["state"] = BreakerState(row.get("state") or BreakerState.CLOSED)
    for name in _TIMES:
        values[name] = from_stored(row.get(name))  # one that does not read: unknown
    values["attempts"] = int(row.get("attempts") or 0)
    values["transient_failures"] = int(row.get("transient_failures") or 0)
    values["consecutive_failures"] = int(row.get("consecutive_failures") or 0)
    return FleetRecord(**values)


def record_to_row(record: FleetRecord) -> dict:
    """A FleetRecord as a row for store.fleet."""
    row = {f.name: getattr(record, f.name) for f in fields(FleetRecord)}
    row["api"] = record.api.value
    row["state"] = record.state.value
    for name in _TIMES:
        row[name] = to_iso(row[name]) if row[name] else None
    return row
