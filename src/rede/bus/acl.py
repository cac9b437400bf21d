"""Redis ACL users per role, with the least stream permissions each role needs.

Signing proves who sent an envelope; ACLs bound what a stolen Redis password can touch. Each
orchestrator process and each agent gets a Redis user of its own (``rede keys acl`` prints
the ``ACL SETUSER`` lines for a network). Key patterns are prefixed with the bus namespace;
``%R~`` allows reading a key, ``%W~`` writing it, ``~`` both (Redis 7 selectors).

An **agent** ``A`` serving capabilities ``C``:

- reads and acknowledges only its own task streams, ``rede.task.<c>.A`` for each ``c`` in
  ``C`` (``XREADGROUP`` and the claims need both), and the calls for bids on ``C``;
- writes (``XADD``) replies to any ``rede.reply.*`` stream, never reads one: it cannot see
  another agent's results nor any run's traffic;
- owns its instances' inboxes ``rede.inbox.A-<16 hex>`` and stored cards
  ``rede:card:A-<16 hex>``;
- reads the registry and the stored cards (its process follows the registry), writes
  heartbeats, dead letters and the shared "rejected once" marks;
- keeps its idempotent replies under ``rede:kept:*``.

An **orchestrator** writes every task stream and reads them for backlogs (``XINFO``), owns
the reply streams ``rede.reply.<name>-<16 hex>``, writes inboxes (answers to agents' questions) and
bids, reads the registry and cards, and writes events and dead letters. A process that
also runs agents (in-process spawned replicas) needs their rules too: give its user both
lists (ACL rules add up).

Commands are listed one by one (no ``+@all``): the stream commands the bus uses, ``SET``/
``GET``/``PTTL``/``PEXPIRE``/``DEL``/``EXISTS``/``SCAN`` for cards and kept values,
``MULTI``/``EXEC``, ``TIME``, ``PING`` and the client's hello (``CLIENT SETNAME``; redis-py
ignores a refused ``CLIENT SETINFO``, which Redis 7.0 does not have).
"""

from __future__ import annotations

from collections.abc import Iterable

COMMANDS = (
    "+xadd +xread +xreadgroup +xack +xclaim +xpending +xrange +xrevrange +xlen +xinfo|groups "
    "+xgroup|create +xgroup|destroy +xgroup|delconsumer +set +get +pttl +pexpire +del +exists "
    "+scan +multi +exec +discard +time +ping +client|setname +hello"
).split()


INSTANCE = "?" * 16
"""An instance id's random part (16 hex digits): ``researcher-*`` would match the instances
of an agent named ``researcher-fast`` too."""


def agent_rules(agent: str, capabilities: Iterable[str], namespace: str = "") -> list[str]:
    """ACL rules for agent ``agent``'s user (see the module)."""
    ns = namespace
    caps = list(capabilities)
    keys = [f"~{ns}rede.task.{cap}.{agent}" for cap in caps]
    keys += [f"%R~{ns}rede.bids.{cap}" for cap in caps]
    keys += [
        f"%W~{ns}rede.reply.*",
        f"~{ns}rede.inbox.{agent}-{INSTANCE}",
        f"~{ns}rede:card:{agent}-{INSTANCE}",
        f"%R~{ns}rede:card:*",
        f"~{ns}rede.registry",
        f"%W~{ns}rede.dead",
        f"~{ns}rede:rejected:*",
        f"~{ns}rede:kept:*",
    ]
    return [*keys, *COMMANDS]


def orchestrator_rules(name: str = "orchestrator", namespace: str = "") -> list[str]:
    """ACL rules for an orchestrator process's user (see the module)."""
    ns = namespace
    keys = [
        f"~{ns}rede.task.*",
        f"~{ns}rede.reply.{name}-{INSTANCE}",
        f"~{ns}rede.reply.auction-{INSTANCE}",  # a call for bids' own topic, from Python
        f"~{ns}rede.reply.run-{INSTANCE}",  # a run's own reply topic, where one is used
        f"%W~{ns}rede.inbox.*",
        f"%W~{ns}rede.bids.*",
        f"%R~{ns}rede:card:*",
        f"~{ns}rede.registry",
        f"%W~{ns}rede.events",
        f"%W~{ns}rede.dead",
        f"~{ns}rede:rejected:*",
        f"~{ns}rede:kept:rede:alive:{name}-{INSTANCE}",  # its mark: gone if Redis came back empty
    ]
    return [*keys, *COMMANDS]


def setuser(user: str, password: str, rules: list[str]) -> list[str]:
    """The ``ACL SETUSER`` arguments that make ``user`` with exactly ``rules``."""
    return [user, "reset", "on", f">{password}", "resetchannels", *rules]


__all__ = ["COMMANDS", "INSTANCE", "agent_rules", "orchestrator_rules", "setuser"]
