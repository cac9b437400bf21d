"""``rede keys``: per-agent signing identities for a network on a shared bus.

``rede keys init DIR --network NET.yaml`` makes a key pair for the orchestrator and one for
each agent of the network (``DIR/keyring.json`` with the public keys, ``DIR/<kid>.key`` with
each private key, mode 0600); ``rotate`` adds a second key for one identity, ``retire``
drops an old one, ``list`` shows the keyring. See :mod:`rede.protocol.identity`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from rede.config import NetworkConfig
from rede.console import make_console, print_error
from rede.errors import RedeError

console = make_console()
keys_app = typer.Typer(help="Per-agent signing keys for a network on a shared bus (Redis).")
Dir = Annotated[Path, typer.Argument(help="The keys directory (bus.keys in the YAML).")]


def _fail(exc: RedeError) -> None:
    print_error(make_console(stderr=True), exc)
    raise typer.Exit(1)


@keys_app.callback()
def _needs_the_redis_extra() -> None:
    """Per-agent signing keys for a network on a shared bus (Redis)."""
    try:
        import rede.protocol.identity  # noqa: F401  (cryptography, from the redis extra)
    except RedeError as exc:
        _fail(exc)


@keys_app.command("init")
def init(
    directory: Dir,
    network: Annotated[
        Path | None, typer.Option(help="Make a key for every agent of this network.")
    ] = None,
    agent: Annotated[list[str] | None, typer.Option(help="An agent name (repeatable).")] = None,
    orchestrator: Annotated[str, typer.Option(help="The orchestrator's identity.")] = (
        "orchestrator"
    ),
) -> None:
    """Make the keyring and a key file per identity."""
    from rede.config import NetworkConfig
    from rede.protocol.identity import KEYRING, new_key

    try:
        names = list(agent or [])
        if network is not None:
            names += [a.name for a in NetworkConfig.from_yaml(network).agents]
        if (directory / KEYRING).exists():
            raise RedeError(f"{directory / KEYRING} exists: use `rede keys rotate` to add keys")
        made = [new_key(directory, orchestrator, "orchestrator")]
        made += [new_key(directory, name, "agent") for name in dict.fromkeys(names)]
    except RedeError as exc:
        _fail(exc)
        return
    console.print(f"made {len(made)} keys in {directory}: {', '.join(made)}", highlight=False)
    console.print(
        "copy keyring.json to every machine and each <kid>.key only where that agent runs; "
        f"then set `bus: {{keys: {directory}}}` in the YAML",
        highlight=False,
    )


@keys_app.command("rotate")
def rotate(
    directory: Dir,
    principal: Annotated[str, typer.Argument(help="The agent (or orchestrator) to rotate.")],
) -> None:
    """Add a new key for PRINCIPAL; the old one stays valid until retired."""
    from rede.protocol.identity import Keyring, new_key

    try:
        ring = Keyring(directory / "keyring.json")
        role = next(
            (k.role for kid in ring.kids() if (k := ring.get(kid)) and k.principal == principal),
            None,
        )
        if role is None:
            raise RedeError(f"{principal!r} has no key in {directory}; known: {ring.kids()}")
        kid = new_key(directory, principal, role)
    except RedeError as exc:
        _fail(exc)
        return
    console.print(
        f"added {kid}: both keys of {principal!r} are valid. Copy keyring.json everywhere "
        f"(verifiers reload it), restart {principal!r}'s replicas one at a time with "
        f"{kid}.key, then `rede keys retire {directory} <old kid>`",
        highlight=False,
    )


@keys_app.command("retire")
def retire(directory: Dir, kid: Annotated[str, typer.Argument(help="The key id to drop.")]) -> None:
    """Drop an old key from the keyring: envelopes signed with it are rejected."""
    from rede.protocol.identity import retire as drop

    try:
        drop(directory, kid)
    except RedeError as exc:
        _fail(exc)
        return
    console.print(f"retired {kid}; copy keyring.json to every machine", highlight=False)


@keys_app.command("list")
def show(directory: Dir) -> None:
    """The keyring: key id, principal, role, and whether its key file is here."""
    from rede.protocol.identity import Keyring

    try:
        ring = Keyring(directory / "keyring.json")
    except RedeError as exc:
        _fail(exc)
        return
    table = Table("kid", "principal", "role", "key file here")
    for kid in ring.kids():
        key = ring.get(kid)
        assert key is not None
        table.add_row(
            kid, key.principal, key.role, "yes" if (directory / f"{kid}.key").exists() else ""
        )
    console.print(table)


@keys_app.command("acl")
def acl(
    network: Annotated[Path, typer.Argument(help="The network YAML.")],
    namespace: Annotated[str, typer.Option(help="The bus's key prefix, if any.")] = "",
) -> None:
    """Print an ``ACL SETUSER`` line per role: the orchestrator and each agent, each with the
    least stream permissions it needs (set a real password for each ``<...>``)."""
    from rede.bus.acl import agent_rules, orchestrator_rules, setuser
    from rede.config import NetworkConfig

    try:
        conf = NetworkConfig.from_yaml(network)
    except RedeError as exc:
        _fail(exc)
        return
    users = [("orchestrator", orchestrator_rules(namespace=namespace))]
    users += [(a.name, agent_rules(a.name, a.capabilities, namespace)) for a in conf.agents]
    for user, rules in users:
        args = setuser(f"rede-{user}", f"<password for {user}>", rules)
        print("ACL SETUSER " + " ".join(_quoted(a) for a in args))


def _quoted(arg: str) -> str:
    return f'"{arg}"' if any(c in arg for c in " <>*") else arg


@contextlib.contextmanager
def throwaway_keys(conf: NetworkConfig) -> Iterator[Path | None]:
    """For ``rede up`` on the embedded bus it starts: a keyring made for this one run, in a
    private temporary directory handed to its agent processes through ``REDE_KEYS``, so its
    bus is signed like any shared bus; removed, and ``REDE_KEYS`` unset, on leaving. None
    when the network says how to sign (or not)."""
    from rede.assembly import KEYS_ENV
    from rede.protocol.identity import new_key

    b = conf.bus
    if b.keys or b.signing_key_env or b.insecure or os.environ.get(KEYS_ENV):
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="rede-keys-") as made:  # mode 0700: this user only
        directory = Path(made)
        new_key(directory, "orchestrator", "orchestrator")
        for name in dict.fromkeys(a.name for a in conf.agents):
            new_key(directory, name, "agent")
        os.environ[KEYS_ENV] = made  # the agent processes inherit it
        try:
            yield directory
        finally:
            if os.environ.get(KEYS_ENV) == made:
                del os.environ[KEYS_ENV]
