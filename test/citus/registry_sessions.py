#!/usr/bin/python3
"""test/citus/registry_sessions.py <port>...: registry changes reach every
session on every node of a Citus cluster where regstack.distribute() made
the registry tables reference tables.

One long-lived session per node (the ports given, coordinator first, in
database $REGSTACK_CITUS_DB or regstack_citus) loads its registry caches,
then each change made on one node must be seen by the next call of every
session: a new token type added on the coordinator, a shipped type replaced
from a worker (the replacement is the user's row: builtin false), both
deleted from the other worker, a rate-limit policy changed from a worker.
Prints one line per check and exits 1 on the first wrong answer.
"""
import os
import sys

import psycopg

DB = os.environ.get("REGSTACK_CITUS_DB", "regstack_citus")


def fail(message):
    print(f"FAILED: {message}")
    sys.exit(1)


def issue(conn, token_type):
    """The subject tag a token issued there carries (its first 4 bytes, in
    hex), or 'unknown' for an unknown type."""
    try:
        return conn.execute(
            "SELECT encode(substr(decode(translate(t, '-_', '+/'), 'base64'), 1, 4), 'hex')"
            " FROM regstack.issue_token(%s, subject => 'reg') AS t",
            (token_type,)).fetchone()[0]
    except psycopg.errors.InvalidParameterValue as error:
        if "unknown token type" not in str(error):
            raise
        return "unknown"


def main():
    ports = [int(p) for p in sys.argv[1:]]
    sessions = [psycopg.connect(host="127.0.0.1", port=p, user="postgres",
                                dbname=DB, autocommit=True) for p in ports]
    names = ["coordinator"] + [f"worker{i}" for i in range(1, len(ports))]

    # Load every cache first: a miss for 'custom' on every node.
    for name, conn in zip(names, sessions):
        if issue(conn, "custom") != "unknown":
            fail(f"{name}: token type 'custom' exists before it was added")

    sessions[0].execute("INSERT INTO regstack.token_types (name, default_ttl, max_ttl)"
                        " VALUES ('custom', '1 minute', '1 hour')")
    tags = {issue(conn, "custom") for conn in sessions}
    if "unknown" in tags:
        fail("a type added on the coordinator is unknown to a session on another node")
    if len(tags) != 1:
        fail(f"one subject got different tags on different nodes: {sorted(tags)}")
    print("a type added on the coordinator: known to every node's session;"
          " one subject has one tag everywhere")

    sessions[1].execute("INSERT INTO regstack.token_types"
                        " (name, default_ttl, max_ttl, required_fields)"
                        " VALUES ('pre_auth', '7 minutes', '1 hour', '{}')")
    for name, conn in zip(names, sessions):
        ttl, builtin = conn.execute(
            "SELECT t.expires_at - t.created_at, r.builtin"
            " FROM regstack.peek_token(regstack.issue_token('pre_auth'), 'pre_auth') t,"
            " regstack.token_types r WHERE r.name = 'pre_auth'").fetchone()
        if ttl.total_seconds() != 420 or builtin:
            fail(f"{name}: after a worker replaced pre_auth: ttl {ttl}, builtin {builtin}")
    print("a shipped type replaced from a worker: the new TTL on every node, builtin false")

    sessions[-1].execute("DELETE FROM regstack.token_types WHERE name IN ('custom', 'pre_auth')")
    for name, conn in zip(names, sessions):
        if issue(conn, "custom") != "unknown" or issue(conn, "pre_auth") != "unknown":
            fail(f"{name}: a type deleted on {names[-1]} is still known")
    print(f"types deleted on {names[-1]}: unknown to every node's session")

    for name, conn in zip(names, sessions):
        conn.execute("SELECT regstack.rate_limit_reset(%s, 'login_attempt')", (f"reg-{name}",))
        conn.execute("SELECT allowed FROM regstack.rate_limit_check(%s, 'login_attempt')",
                     (f"reg-{name}",))
    sessions[1].execute("UPDATE regstack.rate_limit_policies SET max_events = 2"
                        " WHERE event_type = 'login_attempt'")
    for name, conn in zip(names, sessions):
        allowed = [conn.execute("SELECT allowed FROM regstack.rate_limit_check(%s, 'login_attempt')",
                                (f"reg-{name}",)).fetchone()[0] for _ in range(2)]
        if allowed != [True, False]:
            fail(f"{name}: after max_events became 2, the 2nd and 3rd calls gave {allowed}")
    print("a policy changed from a worker: every node's session applies it at once")
    for conn in sessions:
        conn.close()


if __name__ == "__main__":
    main()
