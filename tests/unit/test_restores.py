"""What a restore takes and where it writes: ``latest`` of the restore's source, and the
refusal to overwrite a database that holds tables, as tables of cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from workflows.errors import InvalidResource, NotFound, PrecheckFailed
from workflows.params import RestoreParams
from workflows.restores import (
    check_source,
    latest_snapshot,
    refuse_overwrite,
    source_of,
    written_databases,
)
from workflows.schedule import configuration_of_session
from workflows.snapshots import Snapshot

T0 = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)


def snap(session: str, minute: int, *, target: str = "db", configuration: str | None = "",
         databases: tuple[str, ...] = ("shop",)) -> Snapshot:
    """A snapshot of ``session`` finished ``minute`` minutes after T0; ``configuration``
    "" means the one the session name tells (None: a manifest that records none)."""
    if configuration == "":
        configuration = configuration_of_session(session)
    return Snapshot(id=session, session=session, repository="repo", engine="mariadb",
                    server_version="10.11", target=target, configuration=configuration,
                    databases=databases, streams=(), started_at=T0,
                    finished_at=T0 + timedelta(minutes=minute))


SHOP = [snap("shop-100", 1), snap("shop-200", 3)]
BLOG = [snap("blog-150", 2), snap("blog-300", 4)]  # same AppBinding, newer
OTHER_DB = [snap("crm-100", 5, target="crm-db")]


@pytest.mark.parametrize(("snapshots", "source", "expected"), [
    (SHOP, None, "shop-200"),                       # one source: its newest
    (SHOP + BLOG, "shop", "shop-200"),              # not blog-300, the repository's newest
    (SHOP + BLOG, "blog", "blog-300"),
    (SHOP + OTHER_DB, "db", "shop-200"),            # by AppBinding, one configuration on it
    (SHOP + OTHER_DB, "crm-db", "crm-100"),
    (SHOP + OTHER_DB, "crm", "crm-100"),
    # Manifests from before the configuration was recorded: the session name tells.
    ([snap("shop-100", 1, configuration=None), snap("blog-300", 4, configuration=None)],
     "shop", "shop-100"),
    # A session name that tells nothing: the AppBinding alone is the source.
    ([snap("adhoc", 1, configuration=None), snap("manual", 2, configuration=None)],
     None, "manual"),
    # The manifest's record wins over what the name suggests.
    ([snap("shop-100", 1, configuration="nightly"), snap("shop-200", 2)], "nightly", "shop-100"),
])
def test_latest_is_the_newest_of_the_source(snapshots: list[Snapshot], source: str | None,
                                            expected: str) -> None:
    assert latest_snapshot(snapshots, source, repository="repo").id == expected


def test_several_sources_and_none_named_is_refused_listing_each_newest() -> None:
    with pytest.raises(InvalidResource) as caught:
        latest_snapshot(SHOP + BLOG + OTHER_DB, None, repository="repo")
    message = str(caught.value)
    assert 'Repository "repo" holds snapshots of 3 sources, so "latest" is ambiguous' in message
    assert "spec.target.rules[].sourceHost (stashq restore --source)" in message
    # Newest first, each source with its newest snapshot.
    assert message.endswith("Newest of each: crm (AppBinding crm-db) → crm-100 "
                            "(2026-01-01 03:05:00 UTC); blog (AppBinding db) → blog-300 "
                            "(2026-01-01 03:04:00 UTC); shop (AppBinding db) → shop-200 "
                            "(2026-01-01 03:03:00 UTC)")


def test_an_appbinding_backed_up_by_two_configurations_is_ambiguous() -> None:
    with pytest.raises(InvalidResource, match='2 sources named "db"'):
        latest_snapshot(SHOP + BLOG, "db", repository="repo")


@pytest.mark.parametrize(("snapshots", "source", "message"), [
    ([], None, 'Repository "repo" has no snapshots'),
    ([], "shop", 'Repository "repo" has no snapshots'),
    (SHOP + BLOG, "shpo", 'Repository "repo" has no snapshot of "shpo"; it holds snapshots '
                          "of: blog (AppBinding db) → blog-300"),
])
def test_nothing_to_restore_is_not_found(snapshots: list[Snapshot], source: str | None,
                                         message: str) -> None:
    with pytest.raises(NotFound, match=message.replace("(", r"\(").replace(")", r"\)")):
        latest_snapshot(snapshots, source, repository="repo")


def test_a_snapshot_named_by_id_must_be_of_the_named_source() -> None:
    check_source(BLOG[0], None)
    check_source(BLOG[0], "blog")
    check_source(BLOG[0], "db")
    with pytest.raises(InvalidResource, match='"blog-150" was taken from blog '
                                              r'\(AppBinding db\), not from "shop"'):
        check_source(BLOG[0], "shop")


def test_source_of_reads_the_manifest_then_the_session_name() -> None:
    assert str(source_of(snap("nightly-db-1700000000", 0))) == "nightly-db (AppBinding db)"
    assert str(source_of(snap("adhoc", 0, configuration=None))) == "AppBinding db"


@pytest.mark.parametrize(("databases", "params", "expected"), [
    (("shop",), {}, ("shop",)),
    (("shop",), {"database": "shop_copy"}, ("shop_copy",)),
    (("shop",), {"database": "  "}, ("shop",)),
    (("a", "b"), {}, ("a", "b")),
])
def test_written_databases(databases: tuple[str, ...], params: dict[str, str],
                           expected: tuple[str, ...]) -> None:
    wanted = RestoreParams.model_validate(params).database
    assert written_databases(snap("shop-1", 0, databases=databases), wanted) == expected


def test_a_multi_database_snapshot_takes_no_new_name() -> None:
    with pytest.raises(InvalidResource, match="cannot be restored under one new name"):
        written_databases(snap("shop-1", 0, databases=("a", "b")), "c")


@pytest.mark.parametrize(("tables", "overwrite"), [
    ({}, False),                         # no such database: created
    ({"shop_copy": 0}, False),           # exists, empty
    ({"shop": 3}, True),                 # said so
])
def test_new_or_empty_databases_or_overwrite_pass(tables: dict[str, int],
                                                  overwrite: bool) -> None:
    refuse_overwrite(tables, target="db", overwrite=overwrite, renamable=True)


def test_a_database_with_tables_is_refused_saying_how_to_proceed() -> None:
    with pytest.raises(PrecheckFailed) as caught:
        refuse_overwrite({"shop": 3, "empty": 0}, target="db", overwrite=False, renamable=True)
    assert str(caught.value) == (
        'AppBinding "db": database(s) "shop" (3 table(s)) exist and hold tables that the '
        "restore would overwrite; nothing was touched. To replace them, set "
        "spec.target.overwrite: true (stashq restore --overwrite); to keep them, restore "
        "under another name (param database, stashq restore --database NAME)")
    with pytest.raises(PrecheckFailed, match="to keep them, restore into another server$"):
        refuse_overwrite({"a": 1, "b": 2}, target="db", overwrite=False, renamable=False)
