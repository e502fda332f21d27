#!/usr/bin/env python3
"""Send each regstack call to the Citus node that holds its row.

After regstack.distribute() every call gives the same answer on every
node, but only the node holding the row's shard runs it at single-node
speed; any other node forwards it (docs/citus.md).  This client asks the
node it is connected to where a row lives, with regstack.subject_node(),
token_node() and rate_limit_node() (they read Citus's metadata, and
subject_node the cached subject-tag key, but no token or rate-limit row),
and sends the call there, over one connection per node.

    DATABASE_URL=postgresql://app@coordinator:5432/app python3 citus_routing.py

DATABASE_URL names any node of the cluster, or a server without Citus
(then every call stays on it).  The other nodes are reached with the same
user, database and options, at the host and port Citus's metadata names.
Needs psycopg 3 (Debian: python3-psycopg).  Every answer is checked; a
wrong one exits non-zero.
"""

import os
import sys

import psycopg
from psycopg.conninfo import make_conninfo


class OwnerRouter:
    """One autocommit connection per node; each call on its row's node."""

    def __init__(self, url):
        self.url = url
        self.first = psycopg.connect(url, autocommit=True)
        self.nodes = {}
        self.calls_sent = {}  # (node_name, node_port) or "first": calls sent there

    def _on_node_of(self, function, value):
        """The connection to the node holding the row of value, by function."""
        name, port, is_local = self.first.execute(
            f"SELECT node_name, node_port, is_local FROM regstack.{function}(%s)",
            (value,)).fetchone()
        if is_local or name is None:  # this node holds it, or no Citus
            self.calls_sent["first"] = self.calls_sent.get("first", 0) + 1
            return self.first
        if (name, port) not in self.nodes:
            self.nodes[(name, port)] = psycopg.connect(
                make_conninfo(self.url, host=name, port=port), autocommit=True)
        self.calls_sent[(name, port)] = self.calls_sent.get((name, port), 0) + 1
        return self.nodes[(name, port)]

    def issue_token(self, token_type, subject):
        """issue_token on the node of subject's tokens (where caps are kept)."""
        return self._on_node_of("subject_node", subject).execute(
            "SELECT regstack.issue_token(%s, subject => %s)",
            (token_type, subject)).fetchone()[0]

    def consume_token(self, token, token_type):
        """consume_token on the token's node: its subject, or None (no row)."""
        row = self._on_node_of("token_node", token).execute(
            "SELECT subject FROM regstack.consume_token(%s, %s)",
            (token, token_type)).fetchone()
        return None if row is None else row[0]

    def revoke_tokens(self, subject):
        """revoke_tokens on the node of subject's tokens: how many."""
        return self._on_node_of("subject_node", subject).execute(
            "SELECT regstack.revoke_tokens(%s)", (subject,)).fetchone()[0]

    def rate_limit_check(self, key, event_type, max_events, within):
        """rate_limit_check on the key's node: allowed or not."""
        return self._on_node_of("rate_limit_node", key).execute(
            "SELECT allowed FROM regstack.rate_limit_check(%s, %s, %s::integer, %s::interval)",
            (key, event_type, max_events, within)).fetchone()[0]

    def rate_limit_reset(self, key, event_type):
        """rate_limit_reset on the key's node."""
        self._on_node_of("rate_limit_node", key).execute(
            "SELECT regstack.rate_limit_reset(%s, %s)", (key, event_type))

    def close(self):
        for conn in [self.first, *self.nodes.values()]:
            conn.close()


def check(what, got, want):
    """Exit non-zero unless got == want."""
    if got != want:
        sys.exit(f"FAILED: {what}: got {got!r}, want {want!r}")
    print(f"ok: {what}")


def main():
    router = OwnerRouter(os.environ.get(
        "DATABASE_URL", "postgresql://app@127.0.0.1:54329/regstack_demo"))

    # A pre-auth token, redeemed once.
    token = router.issue_token("pre_auth", "alice@example.com")
    check("consume on the token's node", router.consume_token(token, "pre_auth"),
          "alice@example.com")
    check("a second consume finds no row", router.consume_token(token, "pre_auth"), None)

    # Password reset: a cap of 3 live tokens per subject, then revoked.
    for _ in range(4):
        router.issue_token("password_reset", "bob@example.com")
    check("revoke_tokens after 4 issues with a cap of 3",
          router.revoke_tokens("bob@example.com"), 3)

    # A rate limit of 2 per hour: two calls allowed, the third denied.
    router.rate_limit_reset("otp:carol", "otp_sent")
    allowed = [router.rate_limit_check("otp:carol", "otp_sent", 2, "1 hour")
               for _ in range(3)]
    check("rate limit of 2, three calls", allowed, [True, True, False])

    where = ", ".join(f"{'the first node' if node == 'first' else '%s:%s' % node}: {n}"
                      for node, n in router.calls_sent.items())
    print(f"calls sent to {where}")
    router.close()


if __name__ == "__main__":
    main()
