#!/usr/bin/env bash
# iniesta's test command: what CI runs on a fresh machine, and what you run locally.
#
#   ./scripts/test.sh                      fmt, clippy, all tests (unit, integration, doc,
#                                          trybuild), docs
#   ./scripts/test.sh --test sqs_transport extra arguments go to `cargo test`
#   QUICK=1 ./scripts/test.sh --test sqs_transport
#                                          skip fmt, clippy and docs
#
# It makes sure Redis answers on 127.0.0.1:6379 (starting one if not), installs moto into
# .ci/.cache/moto-venv (cached between runs), starts moto on a free loopback port, exports
# INIESTA_TEST_SQS_ENDPOINT and static AWS test credentials, fetches the AsyncAPI schema
# (INIESTA_TEST_ASYNCAPI_SCHEMA), makes sure PostgreSQL answers on 127.0.0.1:5432 and creates a
# fresh database for the run (INIESTA_TEST_DATABASE_URL), and stops and drops what it started
# on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/moto.sh
source "$ROOT/scripts/moto.sh"

REDIS_PORT=6379
STARTED_REDIS=""

fail() {
    echo "error: $*" >&2
    exit 1
}

redis_answers() {
    if command -v redis-cli >/dev/null; then
        [[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == "PONG" ]]
    else
        # bash's /dev/tcp: send PING, expect +PONG.
        (
            exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT" || exit 1
            printf 'PING\r\n' >&3
            read -r -t 2 reply <&3 && [[ "$reply" == "+PONG"* ]]
        ) 2>/dev/null
    fi
}

ensure_redis() {
    redis_answers && return 0
    command -v redis-server >/dev/null ||
        fail "Redis is not running on 127.0.0.1:$REDIS_PORT and redis-server is not installed: apt-get install redis-server"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
        --pidfile "$ROOT/.ci/.cache/redis-$REDIS_PORT.pid" >/dev/null
    STARTED_REDIS=1
    for _ in $(seq 1 50); do
        redis_answers && {
            echo "started redis-server on 127.0.0.1:$REDIS_PORT" >&2
            return 0
        }
        sleep 0.1
    done
    fail "redis-server did not answer on 127.0.0.1:$REDIS_PORT within 5 s"
}

stop_redis() {
    [[ -n "$STARTED_REDIS" && -z "${KEEP_REDIS:-}" ]] || return 0
    local pidfile="$ROOT/.ci/.cache/redis-$REDIS_PORT.pid"
    if [[ -f "$pidfile" ]]; then
        kill "$(cat "$pidfile")" 2>/dev/null || true
        rm -f "$pidfile"
    fi
}

# The official AsyncAPI 3.0.0 JSON schema, for tests/asyncapi_document.rs: from the npm
# package @asyncapi/specs (cached in .ci/.cache), named in INIESTA_TEST_ASYNCAPI_SCHEMA.
ASYNCAPI_SPECS_VERSION=6.11.1
ensure_asyncapi_schema() {
    [[ -n "${INIESTA_TEST_ASYNCAPI_SCHEMA:-}" && -f "$INIESTA_TEST_ASYNCAPI_SCHEMA" ]] && return 0
    local dir="$ROOT/.ci/.cache/asyncapi-specs-$ASYNCAPI_SPECS_VERSION"
    local schema="$dir/package/schemas/3.0.0-without-\$id.json"
    if [[ ! -f "$schema" ]]; then
        command -v npm >/dev/null ||
            fail "npm is not installed (the AsyncAPI schema comes from the npm registry): apt-get install npm"
        rm -rf "$dir"
        mkdir -p "$dir"
        (cd "$dir" && npm pack --silent "@asyncapi/specs@$ASYNCAPI_SPECS_VERSION" >/dev/null &&
            tar xzf asyncapi-specs-"$ASYNCAPI_SPECS_VERSION".tgz) ||
            fail "npm pack @asyncapi/specs@$ASYNCAPI_SPECS_VERSION failed (network?)"
        [[ -f "$schema" ]] || fail "@asyncapi/specs@$ASYNCAPI_SPECS_VERSION has no $schema"
    fi
    export INIESTA_TEST_ASYNCAPI_SCHEMA="$schema"
}

# PostgreSQL for the inbox and outbox tests: it must answer on 127.0.0.1:5432 (started with
# the machine's own command if not); each run gets a fresh database, dropped on exit, named
# in INIESTA_TEST_DATABASE_URL.
PG_HOST=127.0.0.1
PG_PORT=5432
PG_START='pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start'
TEST_DATABASE=""
pg() {
    psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtAc "$1"
}
ensure_postgres() {
    command -v psql >/dev/null ||
        fail "psql is not installed (the test command creates its database with it): apt-get install postgresql-client"
    if ! pg 'SELECT 1' >/dev/null 2>&1; then
        echo "PostgreSQL does not answer on $PG_HOST:$PG_PORT: starting it with: $PG_START" >&2
        bash -c "$PG_START" >&2 ||
            fail "PostgreSQL is not running on $PG_HOST:$PG_PORT and '$PG_START' failed: start it, trust auth for user postgres"
        for _ in $(seq 1 50); do
            pg 'SELECT 1' >/dev/null 2>&1 && break
            sleep 0.2
        done
        pg 'SELECT 1' >/dev/null 2>&1 ||
            fail "PostgreSQL did not answer on $PG_HOST:$PG_PORT within 10 s after: $PG_START"
    fi
    TEST_DATABASE="iniesta_test_$(date +%s)_$$"
    pg "CREATE DATABASE $TEST_DATABASE" ||
        fail "could not create the test database $TEST_DATABASE on $PG_HOST:$PG_PORT as user postgres"
    export INIESTA_TEST_DATABASE_URL="postgres://postgres@$PG_HOST:$PG_PORT/$TEST_DATABASE"
    echo "test database: $INIESTA_TEST_DATABASE_URL" >&2
}
drop_test_database() {
    [[ -n "$TEST_DATABASE" && -z "${KEEP_DATABASE:-}" ]] || return 0
    pg "DROP DATABASE IF EXISTS $TEST_DATABASE WITH (FORCE)" >/dev/null 2>&1 || true
}

cleanup() {
    moto_stop
    stop_redis
    drop_test_database
}

command -v cargo >/dev/null || fail "cargo is not installed: https://rustup.rs"
command -v curl >/dev/null || fail "curl is not installed: apt-get install curl"
if [[ -z "${QUICK:-}" ]]; then
    cargo fmt --version >/dev/null 2>&1 || fail "rustfmt is missing: rustup component add rustfmt"
    cargo clippy --version >/dev/null 2>&1 || fail "clippy is missing: rustup component add clippy"
fi
mkdir -p "$ROOT/.ci/.cache"

trap cleanup EXIT
ensure_redis
ensure_postgres
ensure_asyncapi_schema
moto_install
moto_start

step() {
    echo "==> $*" >&2
    "$@"
}

if [[ -z "${QUICK:-}" ]]; then
    step cargo fmt --all -- --check
    step cargo clippy --workspace --all-targets --all-features -- -D warnings
    step cargo clippy -p iniesta --all-targets --no-default-features --features cli,sns -- -D warnings
    # The inbox and outbox without SQS: a database-only build compiles on its own.
    step cargo clippy -p iniesta --no-default-features --features postgres -- -D warnings
fi
step cargo test --workspace --all-features "$@"
if [[ $# -eq 0 ]]; then
    # A build without the `redis` feature: what its `check` and settings say of the lock.
    step cargo test -p iniesta --lib --no-default-features --features cli,sns
fi
if [[ -z "${QUICK:-}" ]]; then
    RUSTDOCFLAGS="-D warnings" step cargo doc --workspace --no-deps --all-features
fi
echo "all checks passed" >&2
