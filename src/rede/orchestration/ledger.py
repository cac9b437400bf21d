"""The ledger: an append-only record of every envelope and decision of every run.

``MemoryLedger`` keeps it in the process; ``SQLiteLedger`` writes it to a file, the source
of ``rede trace``. Both answer the same queries.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rede.errors import ConfigError
from rede.protocol.messages import ENVELOPE_ADAPTER, Envelope

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


@dataclass(frozen=True, slots=True)
class _KeptEnvelope:
    """An envelope entry of the in-memory ledger, turned into JSON data only when read:
    envelopes are frozen, so the one kept is the one that travelled."""

    run_id: str
    seq: int
    at: float
    name: str
    envelope: Envelope

    def entry(self) -> Entry:
        data = ENVELOPE_ADAPTER.dump_python(self.envelope, mode="json")
        return Entry(self.run_id, self.seq, self.at, "envelope", self.name, data)


class Ledger:
    """In-memory ledger; subclasses persist."""

    def __init__(self) -> None:
        self._entries: list[Entry | _KeptEnvelope] = []

    def _append(self, entry: Entry) -> None:
        self._entries.append(entry)

    def _next_seq(self) -> int:
        return len(self._entries)

    def record_envelope(self, direction: Literal["sent", "received"], env: Envelope) -> None:
        self._append_envelope(env, time.time(), f"{direction}:{env.kind}")

    def _append_envelope(self, env: Envelope, at: float, name: str) -> None:
        """Keep the envelope itself; :meth:`entries` writes it out as data when asked."""
        self._entries.append(_KeptEnvelope(env.run_id, self._next_seq(), at, name, env))

    def record_decision(self, run_id: str, name: str, **data: Any) -> None:
        self._append(Entry(run_id, self._next_seq(), time.time(), "decision", name, data))

    def entries(self, run_id: str | None = None) -> list[Entry]:
        return [
            e.entry() if isinstance(e, _KeptEnvelope) else e
            for e in self._entries
            if run_id is None or e.run_id == run_id
        ]

    def envelopes(self, run_id: str) -> list[Envelope]:
        return [
            e.envelope if isinstance(e, _KeptEnvelope) else ENVELOPE_ADAPTER.validate_python(e.data)
            for e in self._entries
            if e.run_id == run_id and (isinstance(e, _KeptEnvelope) or e.kind == "envelope")
        ]

    def decisions(self, run_id: str, name: str | None = None) -> list[Entry]:
        return [
            e
            for e in self.entries(run_id)
            if e.kind == "decision" and (name is None or e.name == name)
        ]

    def runs(self) -> list[str]:
        return list(dict.fromkeys(e.run_id for e in self.entries()))

    def close(self) -> None:
        pass


MemoryLedger = Ledger


class SQLiteLedger(Ledger):
    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # one event loop uses it at a time, but that loop may run in another thread than
            # the one that opened it (an ASGI server's, a test's)
            self._db = sqlite3.connect(self.path, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS ledger (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                "run_id TEXT, at REAL, kind TEXT, name TEXT, data TEXT)"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS ledger_run ON ledger(run_id)")
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
