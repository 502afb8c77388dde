"""Shared test fixtures.

Reference material (specs, schemas, samples) is found at `../shared/dci` relative to the
project root, or at `$DCIHUB_SPEC_DIR`. Without it, tests that need it skip with a reason;
with `DCIHUB_REQUIRE_SPEC=1` (set by `.ci/run`) a missing spec fails instead.
"""

from __future__ import annotations

import pytest

from specdir import PROJECT_ROOT, find_spec_dir, require_spec_dir  # noqa: F401


@pytest.fixture(scope="session")
def spec_dir():
    return require_spec_dir()


# ---------------------------------------------------------------------------------------------
# Stores, populations and live servers, on SQLite and on PostgreSQL

TEST_PEOPLE = 3000
TEST_SEED = 4242


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    from support import require_postgres

    if request.param == "postgres":
        require_postgres()
    return request.param


@pytest.fixture(scope="session")
def country():
    from dcihub.population.generator import generate_country

    return generate_country(people=TEST_PEOPLE, seed=TEST_SEED)


@pytest.fixture(scope="session")
def populated_url(backend, country, tmp_path_factory):
    """A store URL on `backend` holding the test country."""
    from dcihub.population.load import load_country
    from dcihub.store import Store
    from support import store_url_for

    with store_url_for(backend, tmp_path_factory.mktemp("store")) as url:
        store = Store(url)
        store.upgrade()
        load_country(store, country)
        store.dispose()
        yield url


@pytest.fixture(scope="session")
def server(populated_url, tmp_path_factory):
    """A real, secured dcihub server on loopback over the test country (SQLite and
    PostgreSQL), with one registered partner (`server.partner`)."""
    from dcihub.store import Store
    from support import live_server, test_settings

    settings = test_settings(populated_url, data_dir=tmp_path_factory.mktemp("node"))
    store = Store(populated_url)
    running = live_server(settings, store)
    yield running
    running.stop()
    store.dispose()


@pytest.fixture(scope="session")
def client(server):
    """A DCI client acting as the registered partner: token + signed envelopes."""
    from support import DCIClient

    return DCIClient(server, server.partner)


@pytest.fixture()
def receiver():
    """A real SP-MIS callback receiver on loopback."""
    from receiver import CallbackReceiver

    running = CallbackReceiver().start()
    yield running
    running.stop()
