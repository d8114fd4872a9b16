"""Each session server really answers, and each per-test fixture gives a corner of its own."""

from pathlib import Path

import prometheus_client
import redis

from devstack.servers import MariaDBServer, Pushgateway, RedisServer, S3Ports, S3Server
from devstack.servers.s3 import MAX_VOLUMES


def test_mariadb_answers_as_root_over_tcp(mariadb_server: MariaDBServer) -> None:
    with mariadb_server.connect() as conn, conn.cursor() as cursor:
        cursor.execute("SELECT VERSION(), CURRENT_USER()")
        version, user = cursor.fetchone()
    assert "MariaDB" in version
    assert user == "root@127.0.0.1"


def test_database_is_new_and_empty(mariadb_server: MariaDBServer, database: str) -> None:
    with mariadb_server.connect(database) as conn, conn.cursor() as cursor:
        cursor.execute("SHOW TABLES")
        assert cursor.fetchall() == ()
        cursor.execute("CREATE TABLE t (id INT PRIMARY KEY)")


def test_redis_answers_ping(redis_server: RedisServer) -> None:
    with redis.Redis.from_url(redis_server.url) as client:
        assert client.ping()


def test_redis_url_is_an_empty_db_of_its_own(redis_server: RedisServer, redis_url: str) -> None:
    assert redis_url.rsplit("/", 1)[1] != "0"
    with redis.Redis.from_url(redis_url) as client:
        assert client.dbsize() == 0
        client.set("left-behind", "1")


def test_s3_put_then_get(s3_server: S3Server, bucket: str) -> None:
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="dir/hello.txt", Body=b"hello")
    assert client.get_object(Bucket=bucket, Key="dir/hello.txt")["Body"].read() == b"hello"
    assert [b["Name"] for b in client.list_buckets()["Buckets"]].count(bucket) == 1


def test_s3_holds_data_in_more_buckets_than_its_disk_based_default_allows(
        tmp_path: Path) -> None:
    """Every test makes a bucket; left to itself, `weed mini` allows free disk / 1 GiB
    volumes (59 here), and the suite ran out ("No writable volumes")."""
    server = S3Server(tmp_path / "s3", S3Ports.free())
    server.start()
    try:
        client = server.client()
        for i in range(MAX_VOLUMES // 10):
            name = f"many-{i}"
            server.make_bucket(name)
            client.put_object(Bucket=name, Key="k", Body=b"x")
    finally:
        server.kill()


def test_pushgateway_shows_a_pushed_metric(pushgateway: Pushgateway) -> None:
    registry = prometheus_client.CollectorRegistry()
    gauge = prometheus_client.Gauge("stashq_smoke_value", "smoke test", registry=registry)
    gauge.set(42)
    prometheus_client.push_to_gateway(pushgateway.url, job="smoke", registry=registry)
    assert 'stashq_smoke_value{instance="",job="smoke"} 42' in pushgateway.metrics_text()
