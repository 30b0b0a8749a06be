"""Redis clients from LOGKEEP_REDIS_URL: one server, a Redis Cluster, or a primary that
Sentinel watches.

- `redis://`, `rediss://`, `unix://`: one server (redis-py's URL, as it always was);
- `redis+cluster://[user:password@]host:port[,host:port...]`: redis-py's RedisCluster.
  The nodes listed are where it starts; it learns the others from them;
- `redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]`: the primary
  the sentinels name for `service`, followed across failovers.

`rediss+cluster://` and `rediss+sentinel://` use TLS (the `ssl_*` options of redis-py
may be given as query parameters). For Sentinel, `user:password@` is for the data nodes;
`?sentinel_username=&sentinel_password=` for the sentinels, if they require one.

Every client is typed as `redis.asyncio.Redis`: RedisCluster has the same command
methods (redis-py's command mixins) without being a subclass. logkeep gives it only
commands, scripts and MULTIs whose keys share one slot (cache/keys.py), and pipelines
without MULTI otherwise, which both clients run alike.
"""

from __future__ import annotations

import asyncio
import os
import traceback
from dataclasses import dataclass, field
from typing import Any, Literal, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import ClusterDownError, RedisClusterException, SlotNotCoveredError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

Kind = Literal["server", "cluster", "sentinel"]

SCHEMES: dict[str, tuple[Kind, bool]] = {
    "redis": ("server", False),
    "rediss": ("server", True),
    "unix": ("server", False),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
}
DEFAULT_PORTS: dict[Kind, int] = {"server": 6379, "cluster": 6379, "sentinel": 26379}
TLS_OPTIONS = frozenset({"ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs"})
SENTINEL_OPTIONS = frozenset({"sentinel_username", "sentinel_password"})


class RedisUrlError(ValueError):
    """LOGKEEP_REDIS_URL cannot name a Redis; the message says what is wrong with it."""


@dataclass(frozen=True)
class RedisTarget:
    """What a URL names, without connecting."""

    kind: Kind
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""  # Sentinel's name of the primary
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    options: dict[str, str] = field(default_factory=dict, repr=False)

    def options_for(self, names: frozenset[str]) -> dict[str, str]:
        return {k: v for k, v in self.options.items() if k in names}

    def describe(self) -> str:
        """Hosts (and service), without credentials: for messages."""
        hosts = ",".join(f"{h}:{p}" for h, p in self.nodes)
        if self.kind == "cluster":
            return f"cluster {hosts}"
        return f"sentinel {hosts} service {self.service!r}"


def parse_redis_url(url: str) -> RedisTarget:
    """A cluster or Sentinel URL's parts; a one-server URL is left to redis-py."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        raise RedisUrlError(f"LOGKEEP_REDIS_URL: unknown scheme {scheme[:20]!r}; use {known}")
    kind, tls = SCHEMES[scheme.lower()]
    if kind == "server":
        return RedisTarget(kind, tls=tls)
    parts = urlsplit(f"x://{rest}")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, has_password, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if has_password else None
    nodes = tuple(_node(item, DEFAULT_PORTS[kind]) for item in hostlist.split(","))
    path = [unquote(p) for p in parts.path.split("/") if p]
    service = ""
    if kind == "sentinel":
        if not path:
            raise RedisUrlError(
                "LOGKEEP_REDIS_URL: a Sentinel URL names the service after the hosts: "
                "redis+sentinel://host:26379,host:26380/mymaster"
            )
        service, path = path[0], path[1:]
    if len(path) > 1 or (path and not path[0].isdigit()):
        raise RedisUrlError(f"LOGKEEP_REDIS_URL: {parts.path!r} is not a database number")
    db = int(path[0]) if path else 0
    if kind == "cluster" and db != 0:
        raise RedisUrlError("LOGKEEP_REDIS_URL: Redis Cluster has only database 0")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    allowed = (TLS_OPTIONS if tls else frozenset()) | (
        SENTINEL_OPTIONS if kind == "sentinel" else frozenset()
    )
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise RedisUrlError(
            f"LOGKEEP_REDIS_URL: unknown option {unknown[0]!r}"
            + (f" (known: {', '.join(sorted(allowed))})" if allowed else "")
        )
    return RedisTarget(kind, nodes, service, db, username, password, tls, options)


def _node(item: str, default_port: int) -> tuple[str, int]:
    item = item.strip()
    if item.startswith("["):  # [IPv6]:port
        host, _, port = item[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
    if not host:
        raise RedisUrlError(f"LOGKEEP_REDIS_URL: {item!r} is not host:port")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise RedisUrlError(f"LOGKEEP_REDIS_URL: {item!r} has no valid port")
    return host, int(port) if port else default_port


def describe_target(url: str) -> str:
    """Where a URL points, without credentials (for error messages)."""
    try:
        target = parse_redis_url(url)
    except RedisUrlError:
        return "an unusable URL"
    if target.kind != "server":
        return target.describe()
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or ''}"


# What a node lost, or not yet replaced, answers (or fails to).
NODE_LOST = (RedisConnectionError, RedisTimeoutError, ClusterDownError)


class ClusterUnavailable(RedisConnectionError):
    """The cluster's layout could not be learned, or a slot has no primary right now (a
    failover or a resharding under way): transient, like a lost connection."""


# Where redis-py and asyncio's transports live: an AttributeError or TypeError raised
# there is a connection torn down under a command (see _torn_down).
_LIBRARY_DIRS = tuple(f"{m.__path__[0]}{os.sep}" for m in (redis, asyncio))


def _torn_down(exc: BaseException) -> RedisConnectionError | None:
    """The lost connection that `exc` stands for, if it is one.

    When redis-py learns a new layout it disconnects the nodes it dropped, cutting the
    connections other tasks are writing on at that moment; a write on such a connection
    (or on one the peer reset) fails inside redis-py or asyncio with AttributeError or
    TypeError ('NoneType' object has no attribute 'writelines'), not ConnectionError
    (redis-py issue 4287), and callers that handle a lost connection answered 500. An
    error raised in logkeep's own code is left as it is."""
    if not isinstance(exc, AttributeError | TypeError) or exc.__traceback__ is None:
        return None
    innermost = traceback.extract_tb(exc.__traceback__)[-1].filename
    if not innermost.startswith(_LIBRARY_DIRS):
        return None
    lost = RedisConnectionError(f"connection lost under a command: {exc}")
    lost.__cause__ = exc
    return lost


class SharedRedisCluster(RedisCluster):
    """redis-py's RedisCluster, for a client that many tasks use at once.

    - redis-py calls aclose() to forget the cluster's layout (after CLUSTERDOWN, an
      uncovered slot, every few MOVED replies, a pipeline's lost connection). Closing
      also cuts the connections other tasks are using at that moment, whose commands then
      fail with odd errors or wait for their socket timeout (seen in a failover: 40 s).
      Here it only makes the next command learn the layout again, which redis-py does
      without cutting commands in flight; `close_for_good` closes.
    - What redis-py raises when it cannot learn the layout or finds a slot without a
      primary is not a RedisError; here it is one (ClusterUnavailable), so callers treat
      it as they treat a lost connection: 503, retry, cache skipped.
    - A pipeline that met a lost node makes the client learn the layout again, as a
      single command does (see _SharedClusterPipeline).
    """

    _shut = False

    async def aclose(self) -> None:
        if self._shut:
            await super().aclose()
        else:
            self._initialize = True

    async def close_for_good(self) -> None:
        self._shut = True
        await super().aclose()

    async def initialize(self, *args: Any, **kwargs: Any) -> RedisCluster:
        try:
            return await super().initialize(*args, **kwargs)
        except RedisClusterException as exc:
            raise ClusterUnavailable(str(exc)) from exc

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except SlotNotCoveredError as exc:
            self._initialize = True
            raise ClusterUnavailable(str(exc)) from exc
        except (AttributeError, TypeError) as exc:
            if (lost := _torn_down(exc)) is None:
                raise
            self._initialize = True
            raise lost from exc

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        if shard_hint:
            raise RedisClusterException("shard_hint is deprecated in cluster mode")
        # redis-py's own pipeline() makes a ClusterPipeline the same way; mypy counts an
        # attribute redis-py sets in __init__ as abstract.
        return _SharedClusterPipeline(self, transaction)  # type: ignore[abstract]


class _SharedClusterPipeline(ClusterPipeline):
    """A pipeline that, like a single command, makes the client learn the cluster's
    layout again when a node was lost (redis-py's pipeline does not when it gives the
    errors back rather than raising them, nor when it is not to retry: the client would
    keep sending a dead primary's slots to it)."""

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        try:
            replies = await super().execute(raise_on_error, allow_redirections)
        except SlotNotCoveredError as exc:
            self.cluster_client._initialize = True
            raise ClusterUnavailable(str(exc)) from exc
        except NODE_LOST as exc:
            self.cluster_client._initialize = True
            raise exc
        except (AttributeError, TypeError) as exc:
            if (lost := _torn_down(exc)) is None:
                raise
            self.cluster_client._initialize = True
            raise lost from exc
        if any(isinstance(reply, NODE_LOST) for reply in replies):
            self.cluster_client._initialize = True
        return replies


async def close_client(client: aioredis.Redis) -> None:
    """Close a client made by make_client, its connections and any helper's."""
    if isinstance(client, SharedRedisCluster):
        await client.close_for_good()
    else:
        await client.aclose()


class SentinelRedis(aioredis.Redis):
    """The client of Sentinel's current primary; closing it closes its connections to
    the sentinels too."""

    sentinels: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinels is not None:
            await self.sentinels.aclose()
            self.sentinels = None


def make_client(url: str, **options: Any) -> aioredis.Redis:
    """A client for whatever the URL names. `options` are redis-py's connection options
    (max_connections, socket_timeout, retry, ...), which all three clients take."""
    target = parse_redis_url(url)
    if target.kind == "server":
        return aioredis.from_url(url, **options)
    auth: dict[str, Any] = {"username": target.username, "password": target.password}
    tls: dict[str, Any] = {"ssl": True, **target.options_for(TLS_OPTIONS)} if target.tls else {}
    if target.kind == "cluster":
        cluster = SharedRedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            **auth,
            **tls,
            **options,
        )
        return cast(aioredis.Redis, cluster)
    sentinel_auth: dict[str, Any] = {
        "username": target.options.get("sentinel_username"),
        "password": target.options.get("sentinel_password"),
    }
    timeouts = {k: v for k, v in options.items() if k.startswith("socket_")}
    # redis-py's Sentinel.__init__ carries no annotations.
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(target.nodes), sentinel_kwargs={**timeouts, **sentinel_auth, **tls}
    )
    client = sentinel.master_for(
        target.service, redis_class=SentinelRedis, db=target.db, **auth, **tls, **options
    )
    assert isinstance(client, SentinelRedis)
    client.sentinels = sentinel
    return client


def is_cluster(client: aioredis.Redis) -> bool:
    return isinstance(client, RedisCluster)
