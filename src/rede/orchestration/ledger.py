"""The ledger: an append-only record of every envelope and decision of every run, and the
checkpoints that let a run resume in another process.

``MemoryLedger`` keeps it in the process (the last ``max_runs`` runs); ``SQLiteLedger`` writes
it to a file, the source of ``rede trace``, ``rede runs`` and ``rede resume``. Both answer the
same queries.

Checkpoints (see :mod:`rede.orchestration.durable`) are one row per run: its state as JSON,
its status, and a *lease*: the orchestrator that holds the run renews it while the run is
live; a run whose lease lapsed (its process died) may be claimed by another. A person's
answers to a paused run (approvals, replies) are rows of their own, written by whoever
answers (``rede approve`` in another process) and read by the run when it polls.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rede.errors import ConfigError
from rede.protocol.messages import ENVELOPE_ADAPTER, Envelope

LIVE = ("running", "waiting")
"""Statuses of a run that has not ended: it may be resumed."""

EntryKind = Literal["envelope", "decision"]


@dataclass(frozen=True)
class Entry:
    run_id: str
    seq: int
    at: float
    kind: EntryKind
    name: str
    """For envelopes: ``sent``/``received`` + kind; for decisions: plan, route, retry, ..."""
    data: dict[str, Any]


class _Kept(list):  # type: ignore[type-arg]
    """The entries of one run in the in-memory ledger, flat: ``seq, at, name, item`` for each,
    where ``item`` is the envelope itself or a decision's data (always a dict). No entry is an
    object of its own (fewer objects for the garbage collector to walk); an :class:`Entry` is
    made when read. Envelopes are frozen, so the one kept is the one that travelled, written
    out as JSON data only when read."""

    __slots__ = ()

    def rows(self) -> Iterator[tuple[int, float, str, Envelope | dict[str, Any]]]:
        it = iter(self)
        return zip(it, it, it, it, strict=True)

    def items(self) -> list[Envelope | dict[str, Any]]:
        return self[3::4]  # type: ignore[no-any-return]


def _entry(run_id: str, seq: int, at: float, name: str, item: Envelope | dict[str, Any]) -> Entry:
    if isinstance(item, dict):
        return Entry(run_id, seq, at, "decision", name, item)
    return Entry(run_id, seq, at, "envelope", name, ENVELOPE_ADAPTER.dump_python(item, mode="json"))


@dataclass(frozen=True)
class RunRow:
    """A run's checkpoint row: who holds it, until when, and its state."""

    run_id: str
    network: str
    status: str
    owner: str
    lease_until: float
    state: dict[str, Any]


class Ledger:
    """In-memory ledger: the entries and checkpoints of the last ``max_runs`` runs (older runs
    are forgotten, so a long-lived process does not grow without end); subclasses persist."""

    def __init__(self, max_runs: int | None = 1000) -> None:
        self.max_runs = max_runs
        self._runs: OrderedDict[str, _Kept] = OrderedDict()
        self._seq = 0
        self._states: dict[str, tuple[str, str, str, float, Any]] = {}
        self._answers: dict[tuple[str, str], dict[str, Any]] = {}

    def _kept(self, run_id: str) -> _Kept:
        kept = self._runs.get(run_id)
        if kept is None:
            kept = self._runs[run_id] = _Kept()
            while self.max_runs is not None and len(self._runs) > self.max_runs:
                old, _ = self._runs.popitem(last=False)
                self._states.pop(old, None)
        return kept

    def _append(self, entry: Entry) -> None:
        item = entry.data
        if entry.kind == "envelope":
            item = ENVELOPE_ADAPTER.validate_python(entry.data)
        self._kept(entry.run_id).extend((self._next_seq(), entry.at, entry.name, item))

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def record_envelope(self, direction: Literal["sent", "received"], env: Envelope) -> None:
        self._append_envelope(env, time.time(), f"{direction}:{env.kind}")

    def _append_envelope(self, env: Envelope, at: float, name: str) -> None:
        """Keep the envelope itself; :meth:`entries` writes it out as data when asked."""
        self._kept(env.run_id).extend((self._next_seq(), at, name, env))

    def record_decision(self, run_id: str, name: str, **data: Any) -> None:
        self._append_decision(run_id, time.time(), name, data)

    def _append_decision(self, run_id: str, at: float, name: str, data: dict[str, Any]) -> None:
        self._kept(run_id).extend((self._next_seq(), at, name, data))

    def entries(self, run_id: str | None = None) -> list[Entry]:
        if run_id is not None:
            kept = self._runs.get(run_id)
            return [] if kept is None else [_entry(run_id, *row) for row in kept.rows()]
        rows = ((r, *row) for r, kept in self._runs.items() for row in kept.rows())
        return [_entry(*row) for row in sorted(rows, key=lambda row: row[1])]

    def envelopes(self, run_id: str) -> list[Envelope]:
        kept = self._runs.get(run_id)
        return [] if kept is None else [e for e in kept.items() if not isinstance(e, dict)]

    def decisions(self, run_id: str, name: str | None = None) -> list[Entry]:
        return [
            e
            for e in self.entries(run_id)
            if e.kind == "decision" and (name is None or e.name == name)
        ]

    def runs(self) -> list[str]:
        return [run_id for run_id, kept in self._runs.items() if kept]

    def close(self) -> None:
        pass

    # ------------------------------------------------------------------ checkpoints

    def save_run(
        self, run_id: str, network: str, status: str, owner: str, state: Any, lease_s: float = 0.0
    ) -> bool:
        """Keep a run's checkpoint (``state``: a pydantic model) for ``owner``. Its lease is
        kept as it is if ``owner`` holds the run; a new run (or one taken from a holder whose
        lease lapsed) is held for ``lease_s`` from now, in the same write, so it is never an
        orphan in between. False, and nothing written, while another owner's lease runs: a
        stalled orchestrator never takes back a run another one adopted."""
        old = self._states.get(run_id)
        now = time.time()
        if old is not None and old[2] != owner and old[3] >= now:
            return False
        if old is not None and old[2] == owner:
            lease = old[3]
        else:
            lease = now + lease_s if lease_s else 0.0
        self._kept(run_id)
        if status not in LIVE:
            # an ended run's checkpoint is only read from now on: kept as its JSON text, not
            # as the dozens of objects (a few a step) the garbage collector would walk
            state = state.model_dump_json()
        self._states[run_id] = (network, status, owner, lease, state)
        return True

    def load_run(self, run_id: str) -> RunRow | None:
        held = self._states.get(run_id)
        if held is None:
            return None
        network, status, owner, lease, state = held
        data = json.loads(state) if isinstance(state, str) else state.model_dump(mode="json")
        return RunRow(run_id, network, status, owner, lease, data)

    def claim_run(self, run_id: str, owner: str, lease_s: float, *, force: bool = False) -> bool:
        """Take a live run for ``owner`` if nobody holds it (or its holder's lease lapsed,
        or ``force``): True if it is ``owner``'s now."""
        held = self._states.get(run_id)
        now = time.time()
        if held is None or held[1] not in LIVE:
            return False
        if held[2] != owner and held[3] > now and not force:
            return False
        self._states[run_id] = (held[0], held[1], owner, now + lease_s, held[4])
        return True

    def renew(self, owner: str, run_ids: list[str], lease_s: float) -> None:
        until = time.time() + lease_s
        for run_id in run_ids:
            held = self._states.get(run_id)
            if held is not None and held[2] == owner:
                self._states[run_id] = (held[0], held[1], owner, until, held[4])

    def orphans(self, network: str | None = None) -> list[str]:
        """Live runs whose holder's lease lapsed: their process died or let them go."""
        now = time.time()
        return [
            run_id
            for run_id, (net, status, _, lease, _) in self._states.items()
            if status in LIVE and lease < now and network in (None, net)
        ]

    def run_statuses(self) -> dict[str, str]:
        return {run_id: held[1] for run_id, held in self._states.items()}

    def end_run(self, run_id: str, status: str) -> None:
        """Mark a run ended (cancelled by a user): it is no longer resumed."""
        held = self._states.get(run_id)
        if held is not None:
            self._states[run_id] = (held[0], status, held[2], held[3], held[4])

    def answer(self, run_id: str, wait_id: str, answer: dict[str, Any]) -> bool:
        """A person's answer to what a run waits for; the first answer stands (False: one
        was already given)."""
        if (run_id, wait_id) in self._answers:
            return False
        self._answers[run_id, wait_id] = {**answer, "at": time.time()}
        return True

    def answer_for(self, run_id: str, wait_id: str) -> dict[str, Any] | None:
        return self._answers.get((run_id, wait_id))


MemoryLedger = Ledger


class SQLiteLedger(Ledger):
    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # one event loop uses it at a time, but that loop may run in another thread than
            # the one that opened it (an ASGI server's, a test's)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS ledger (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                "run_id TEXT, at REAL, kind TEXT, name TEXT, data TEXT)"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS ledger_run ON ledger(run_id)")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, network TEXT, "
                "status TEXT, owner TEXT, lease_until REAL, state TEXT, updated REAL)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS answers (run_id TEXT, wait_id TEXT, data TEXT, "
                "PRIMARY KEY (run_id, wait_id))"
            )
            self._db.commit()
        except sqlite3.DatabaseError as exc:
            raise ConfigError(
                f"{self.path} is not a Rede ledger (a SQLite file it can write): {exc}; "
                "give the path of a ledger file, such as .rede/ledger.db"
            ) from None

    def _append(self, entry: Entry) -> None:
        self._db.execute(
            "INSERT INTO ledger (run_id, at, kind, name, data) VALUES (?, ?, ?, ?, ?)",
            (entry.run_id, entry.at, entry.kind, entry.name, json.dumps(entry.data, default=str)),
        )
        self._db.commit()

    def _next_seq(self) -> int:
        return 0

    def _append_envelope(self, env: Envelope, at: float, name: str) -> None:
        data = ENVELOPE_ADAPTER.dump_python(env, mode="json")
        self._append(Entry(env.run_id, 0, at, "envelope", name, data))

    def _append_decision(self, run_id: str, at: float, name: str, data: dict[str, Any]) -> None:
        self._append(Entry(run_id, 0, at, "decision", name, data))

    def entries(self, run_id: str | None = None) -> list[Entry]:
        q = "SELECT run_id, seq, at, kind, name, data FROM ledger"
        rows = (
            self._db.execute(q + " WHERE run_id = ? ORDER BY seq", (run_id,))
            if run_id is not None
            else self._db.execute(q + " ORDER BY seq")
        )
        return [Entry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]

    def runs(self) -> list[str]:
        """Run ids in order of their first entry, read by an index, not every entry."""
        rows = self._db.execute("SELECT run_id FROM ledger GROUP BY run_id ORDER BY MIN(seq)")
        return [r[0] for r in rows]

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------------ checkpoints

    def save_run(
        self, run_id: str, network: str, status: str, owner: str, state: Any, lease_s: float = 0.0
    ) -> bool:
        now = time.time()
        saved = self._db.execute(
            "INSERT INTO runs (run_id, network, status, owner, lease_until, state, updated) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(run_id) DO UPDATE SET "
            "status = excluded.status, state = excluded.state, updated = excluded.updated, "
            "lease_until = CASE WHEN owner = excluded.owner THEN lease_until "
            "ELSE excluded.lease_until END, owner = excluded.owner "
            "WHERE owner = excluded.owner OR lease_until < ?",
            (run_id, network, status, owner, now + lease_s if lease_s else 0.0,
             state.model_dump_json(), now, now),
        ).rowcount  # fmt: skip
        self._db.commit()
        return saved == 1

    def load_run(self, run_id: str) -> RunRow | None:
        row = self._db.execute(
            "SELECT network, status, owner, lease_until, state FROM runs WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        if row is None:
            return None
        return RunRow(run_id, row[0], row[1], row[2], row[3], json.loads(row[4]))

    def claim_run(self, run_id: str, owner: str, lease_s: float, *, force: bool = False) -> bool:
        now = time.time()
        claimed = self._db.execute(
            "UPDATE runs SET owner = ?, lease_until = ? WHERE run_id = ? AND status IN (?, ?) "
            "AND (owner = ? OR lease_until < ? OR ?)",
            (owner, now + lease_s, run_id, *LIVE, owner, now, force),
        ).rowcount
        self._db.commit()
        return claimed == 1

    def renew(self, owner: str, run_ids: list[str], lease_s: float) -> None:
        if not run_ids:
            return
        marks = ", ".join("?" * len(run_ids))
        self._db.execute(
            f"UPDATE runs SET lease_until = ? WHERE owner = ? AND run_id IN ({marks})",
            (time.time() + lease_s, owner, *run_ids),
        )
        self._db.commit()

    def orphans(self, network: str | None = None) -> list[str]:
        rows = self._db.execute(
            "SELECT run_id FROM runs WHERE status IN (?, ?) AND lease_until < ? "
            "AND (? IS NULL OR network = ?) ORDER BY updated",
            (*LIVE, time.time(), network, network),
        )
        return [r[0] for r in rows]

    def run_statuses(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT run_id, status FROM runs").fetchall())

    def end_run(self, run_id: str, status: str) -> None:
        self._db.execute("UPDATE runs SET status = ? WHERE run_id = ?", (status, run_id))
        self._db.commit()

    def answer(self, run_id: str, wait_id: str, answer: dict[str, Any]) -> bool:
        added = self._db.execute(
            "INSERT OR IGNORE INTO answers (run_id, wait_id, data) VALUES (?, ?, ?)",
            (run_id, wait_id, json.dumps({**answer, "at": time.time()})),
        ).rowcount
        self._db.commit()
        return added == 1

    def answer_for(self, run_id: str, wait_id: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT data FROM answers WHERE run_id = ? AND wait_id = ?", (run_id, wait_id)
        ).fetchone()
        return None if row is None else json.loads(row[0])  # type: ignore[no-any-return]
