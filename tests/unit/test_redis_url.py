"""LOGKEEP_REDIS_URL: one server, a Redis Cluster, or Sentinel; clear errors otherwise."""

from __future__ import annotations

import pytest

from logkeep.cache.client import RedisUrlError, describe_target, parse_redis_url
from logkeep.config import Settings


def test_one_server_urls_are_left_to_redis_py() -> None:
    for url in ("redis://h:6379/0", "rediss://u:p@h:6380/2", "unix:///run/redis.sock?db=1"):
        assert parse_redis_url(url).kind == "server"
    assert describe_target("redis://u:secret@cache:6380/1") == "cache:6380/1"


def test_a_cluster_url_lists_its_seed_nodes() -> None:
    target = parse_redis_url("redis+cluster://logkeep:p%40ss@10.0.0.1:7000,10.0.0.2,[::1]:7002/")
    assert target.kind == "cluster"
    assert target.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002))
    assert (target.username, target.password, target.tls) == ("logkeep", "p@ss", False)
    assert "p@ss" not in repr(target)
    assert describe_target("redis+cluster://u:secret@a:1,b:2") == "cluster a:1,b:2"
    tls = parse_redis_url("rediss+cluster://a:1?ssl_ca_certs=/etc/ca.pem")
    assert tls.tls and tls.options == {"ssl_ca_certs": "/etc/ca.pem"}


def test_a_sentinel_url_names_its_service_and_database() -> None:
    target = parse_redis_url("redis+sentinel://:pw@s1:26379,s2/logkeep/2?sentinel_password=x")
    assert target.kind == "sentinel"
    assert target.nodes == (("s1", 26379), ("s2", 26379))
    assert (target.service, target.db, target.password) == ("logkeep", 2, "pw")
    assert target.options == {"sentinel_password": "x"}
    assert describe_target("redis+sentinel://s1:1/main") == "sentinel s1:1 service 'main'"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("memcached://h:1", "unknown scheme"),
        ("redis+sentinel://s1:26379", "names the service"),
        ("redis+cluster://a:1/3", "only database 0"),
        ("redis+cluster://a:notaport", "no valid port"),
        ("redis+cluster://a:70000", "no valid port"),
        ("redis+cluster://:1", "not host:port"),
        ("redis+sentinel://s:1/m/x", "not a database number"),
        ("redis+cluster://a:1?ssl_ca_certs=x", "unknown option 'ssl_ca_certs'"),
        ("redis+sentinel://s:1/m?retry=3", "unknown option 'retry'"),
    ],
)
def test_unusable_urls_say_what_is_wrong(url: str, reason: str) -> None:
    with pytest.raises(RedisUrlError, match=reason):
        parse_redis_url(url)


def test_shards_default_by_what_the_url_names() -> None:
    def shards(url: str, **values: object) -> int:
        settings = Settings(_env_file=None, redis_url=url, **values)  # type: ignore[arg-type]
        return settings.resolved_ingest_shards

    assert shards("redis://h:6379/0") == 1
    assert shards("redis+sentinel://s:26379/m") == 1
    assert shards("redis+cluster://a:7000") == 6
    assert shards("redis+cluster://a:7000", ingest_shards=3) == 3


def test_an_error_raised_inside_redis_py_is_a_lost_connection() -> None:
    # What a write on a connection another task disconnected raises: an AttributeError
    # inside redis-py (here its command packer given no connection).
    from redis.asyncio.connection import Connection
    from redis.exceptions import ConnectionError as RedisConnectionError

    from logkeep.cache.client import _torn_down

    with pytest.raises(AttributeError) as raised:
        Connection.pack_command(None, "GET", "key")  # type: ignore[arg-type]
    lost = _torn_down(raised.value)
    assert isinstance(lost, RedisConnectionError)
    assert lost.__cause__ is raised.value


@pytest.mark.parametrize("error", [AttributeError, TypeError])
def test_an_error_raised_in_logkeeps_own_code_stays_what_it_is(error: type[Exception]) -> None:
    from logkeep.cache.client import _torn_down

    with pytest.raises(error) as raised:
        raise error("a bug of ours")
    assert _torn_down(raised.value) is None
    assert _torn_down(ValueError("not a torn connection")) is None
