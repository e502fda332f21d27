#!/usr/bin/env python3
"""regstack from Python with psycopg 3: the README's three token flows and
its two-factor rate-limit example, each result checked.

    DATABASE_URL=postgresql://app@127.0.0.1:5432/regstack_demo python3 regstack_example.py

DATABASE_URL is anything libpq accepts (a URL or "host=... dbname=...").
The role needs only what the README grants an application role.  Exits 0
when every answer was right, 1 (with the reason) on the first wrong one.

What to copy from here:
  * autocommit=True: every regstack call is a SELECT that writes (consume
    deletes, rate_limit_record inserts).  With psycopg's default
    (autocommit off) nothing is kept until conn.commit(); a connection
    closed without it rolls back, and a consumed token is redeemable
    again.  Group calls that belong together in `with conn.transaction():`.
  * prepare_threshold=None: psycopg never makes named prepared statements,
    so the same code works through PgBouncer in transaction mode.
  * arguments by name (`subject => %(subject)s`), values always as bind
    parameters (never formatted into the SQL: the server could log them).
  * `SELECT ... FROM regstack.consume_token(...)` for functions that
    return rows: in the select list they would give one composite string.
"""

import base64
import hashlib
import os
import sys
from datetime import datetime, timedelta

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb


def check(condition, what):
    """Stop the program with a message when an answer is wrong."""
    if not condition:
        sys.exit(f"WRONG: {what}")
    print(f"  ok: {what}")


def connect():
    return psycopg.connect(
        os.environ["DATABASE_URL"],
        autocommit=True,          # each call is committed when it returns
        prepare_threshold=None,   # no named prepared statements (PgBouncer)
        row_factory=dict_row,     # rows as {"column": value}
    )


def flow_2fa_login(conn):
    print("Flow 1: password, then second factor")
    cookie = base64.urlsafe_b64encode(os.urandom(16)).decode()  # set HttpOnly
    # After the password check: a pre_auth token bound to the cookie value.
    token = conn.execute(
        "SELECT regstack.issue_token('pre_auth', subject => %(subject)s,"
        "                            challenge => %(cookie)s) AS token",
        {"subject": "alice", "cookie": cookie},
    ).fetchone()["token"]
    check(isinstance(token, str) and len(token) == 48, "issue_token returns a 48-character token")

    consume = ("SELECT subject FROM regstack.consume_token(%(token)s, 'pre_auth',"
               "                                          challenge => %(cookie)s)")
    # A stolen token without the cookie gets nothing, and does not burn it.
    row = conn.execute(consume, {"token": token, "cookie": "not-the-cookie"}).fetchone()
    check(row is None, "a wrong challenge returns no row")
    # The TOTP code was right: redeem the token once.
    row = conn.execute(consume, {"token": token, "cookie": cookie}).fetchone()
    check(row is not None and row["subject"] == "alice", "consume_token returns the subject")
    row = conn.execute(consume, {"token": token, "cookie": cookie}).fetchone()
    check(row is None, "a replayed consume returns no row")


def pkce_s256(verifier):
    """RFC 7636 S256, as the provider computes it (regstack.pkce_challenge)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def flow_oidc(conn):
    print("Flow 2: OIDC sign-in with PKCE")
    # /login/google: a set-returning function, so SELECT * FROM it.
    start = conn.execute(
        "SELECT * FROM regstack.begin_oidc_flow(provider => %(provider)s,"
        "                                       redirect_to => %(redirect_to)s)",
        {"provider": "google", "redirect_to": "https://app.example/home"},
    ).fetchone()
    check(start["code_challenge_method"] == "S256", "begin_oidc_flow returns state, nonce, S256 challenge")
    state = start["state"]  # goes to the provider, with nonce and code_challenge

    # /callback?state=...&code=...: what the token request needs.
    callback = conn.execute(
        "SELECT provider, redirect_to, mode, nonce, code_verifier"
        "  FROM regstack.peek_token(%(state)s, 'oidc_state')",
        {"state": state},
    ).fetchone()
    check(callback is not None and callback["provider"] == "google"
          and callback["mode"] == "signin", "peek_token finds the state")
    check(pkce_s256(callback["code_verifier"]) == start["code_challenge"],
          "the stored verifier matches the challenge sent to the provider")
    check(callback["nonce"] == start["nonce"], "the stored nonce is the one sent")

    # Code exchanged, ID token checked: park the session on the state.
    attached = conn.execute(
        "SELECT regstack.attach_result(%(state)s, 'oidc_state', %(session)s) AS attached",
        {"state": state, "session": "session-jwt-for-alice"},
    ).fetchone()["attached"]
    check(attached is True, "attach_result returns true (a Python bool)")

    # The single-page app exchanges the state for the session, once.
    exchange = "SELECT result, redirect_to FROM regstack.consume_token(%(state)s, 'oidc_state')"
    row = conn.execute(exchange, {"state": state}).fetchone()
    check(row == {"result": "session-jwt-for-alice", "redirect_to": "https://app.example/home"},
          "consume_token returns the session and the redirect")
    check(conn.execute(exchange, {"state": state}).fetchone() is None,
          "a second exchange returns no row")
    attached = conn.execute(
        "SELECT regstack.attach_result(%(state)s, 'oidc_state', 'late') AS attached",
        {"state": state},
    ).fetchone()["attached"]
    check(attached is False, "attach_result on a consumed state returns false")


def flow_password_reset(conn):
    print("Flow 3: password reset")
    # Start clean, so the example can run twice: revoke_tokens returns a
    # bigint, which psycopg gives as int.
    revoked = conn.execute("SELECT regstack.revoke_tokens('alice', 'password_reset') AS n").fetchone()["n"]
    check(isinstance(revoked, int), "revoke_tokens returns an int")

    # "Forgot password" asked four times: at most 3 live per user, the
    # oldest is dropped.
    issue = "SELECT regstack.issue_token('password_reset', subject => %(subject)s) AS token"
    links = [conn.execute(issue, {"subject": "alice"}).fetchone()["token"] for _ in range(4)]
    consume = ("SELECT subject, created_at, expires_at, expires_at - created_at AS valid_for"
               "  FROM regstack.consume_token(%(token)s, 'password_reset')")
    check(conn.execute(consume, {"token": links[0]}).fetchone() is None,
          "the oldest of four links was dropped by the cap of 3")

    row = conn.execute(consume, {"token": links[3]}).fetchone()
    check(row is not None and row["subject"] == "alice", "the newest link redeems")
    # timestamptz -> aware datetime; interval -> timedelta.
    check(isinstance(row["expires_at"], datetime) and row["expires_at"].tzinfo is not None,
          "timestamptz arrives as an aware datetime")
    check(row["valid_for"] == timedelta(hours=1) == row["expires_at"] - row["created_at"],
          "interval arrives as timedelta (1 hour, the type's default TTL)")

    # After the password change every other outstanding link dies too.
    revoked = conn.execute(
        "SELECT regstack.revoke_tokens(subject => %(subject)s, token_type => 'password_reset') AS n",
        {"subject": "alice"},
    ).fetchone()["n"]
    check(revoked == 2, "revoke_tokens revoked the 2 other live links")
    check(conn.execute(consume, {"token": links[1]}).fetchone() is None, "a revoked link returns no row")


def download_link(conn):
    print("Types in: a one-time download link with a jsonb payload and a ttl")
    # jsonb in: wrap the value in Jsonb; interval in: a timedelta.
    token = conn.execute(
        "SELECT regstack.issue_token('download', ttl => %(ttl)s, payload => %(payload)s) AS token",
        {"ttl": timedelta(minutes=10), "payload": Jsonb({"file": "report.pdf", "bytes": 48213})},
    ).fetchone()["token"]
    row = conn.execute(
        "SELECT payload, expires_at - created_at AS ttl FROM regstack.consume_token(%(token)s, 'download')",
        {"token": token},
    ).fetchone()
    check(row["payload"] == {"file": "report.pdf", "bytes": 48213}, "jsonb arrives as a dict")
    check(row["ttl"] == timedelta(minutes=10), "the ttl given as a timedelta was used")


def commit_matters():
    print("Why commit matters: a consume that is not committed did not happen")
    with connect() as conn:
        token = conn.execute("SELECT regstack.issue_token('pre_auth', subject => 'alice') AS t").fetchone()["t"]
    # psycopg's default is autocommit off: the consume runs in a transaction
    # that close() without commit() rolls back.
    forgetful = psycopg.connect(os.environ["DATABASE_URL"], prepare_threshold=None)
    row = forgetful.execute("SELECT subject FROM regstack.consume_token(%s, 'pre_auth')", [token]).fetchone()
    check(row == ("alice",), "the consume returned the row ...")
    forgetful.close()  # no commit(): rolled back
    with connect() as conn:
        row = conn.execute("SELECT subject FROM regstack.consume_token(%s, 'pre_auth')", [token]).fetchone()
        check(row is not None, "... but was rolled back, and the token redeems again")


def two_factor_attempt(conn, user, code_is_right):
    """One POST of a 2FA code, as the README's example: check, verify,
    record or reset, in one transaction.  Returns (allowed, retry_after)."""
    key = f"user:{user}"
    with conn.transaction():  # BEGIN ... COMMIT (ROLLBACK on an exception)
        limit = conn.execute(
            "SELECT allowed, remaining, retry_after, reset_at"
            "  FROM regstack.rate_limit_check(%(key)s, '2fa_attempt', record => false)",
            {"key": key},
        ).fetchone()
        if not limit["allowed"]:
            return False, limit["retry_after"]  # answer 429, Retry-After
        if code_is_right:  # (verify the TOTP code here)
            conn.execute("SELECT regstack.rate_limit_reset(%(key)s, '2fa_attempt')", {"key": key})
        else:
            # Returns void: nothing to fetch.
            conn.execute("SELECT regstack.rate_limit_record(%(key)s, '2fa_attempt')", {"key": key})
        return True, limit["retry_after"]


def rate_limit_2fa(conn):
    print("Rate limit: failed 2FA codes, 5 per 15 minutes")
    forgotten = conn.execute("SELECT regstack.rate_limit_reset('user:42', '2fa_attempt') AS n").fetchone()["n"]
    check(isinstance(forgotten, int), "rate_limit_reset returns an int (start clean)")

    allowed, retry_after = two_factor_attempt(conn, 42, code_is_right=False)
    check(allowed and retry_after == timedelta(0), "first attempt allowed, retry_after is timedelta(0)")
    allowed, _ = two_factor_attempt(conn, 42, code_is_right=True)
    check(allowed, "right code allowed")
    remaining = conn.execute(
        "SELECT remaining FROM regstack.rate_limit_check('user:42', '2fa_attempt', record => false)"
    ).fetchone()["remaining"]
    check(remaining == 5, "the right code forgot the failure (5 attempts left)")

    for _ in range(5):
        allowed, _ = two_factor_attempt(conn, 42, code_is_right=False)
        check(allowed, "wrong code allowed to be tried, failure recorded")
    allowed, retry_after = two_factor_attempt(conn, 42, code_is_right=True)
    check(not allowed, "after 5 failures even the right code is refused")
    check(timedelta(seconds=1) <= retry_after <= timedelta(minutes=15),
          f"retry_after is a timedelta: {retry_after}")
    header = int(retry_after.total_seconds())  # whole seconds already
    print(f"  -> HTTP 429, Retry-After: {header}")

    forgotten = conn.execute(
        "SELECT regstack.rate_limit_reset(key => 'user:42', event_type => '2fa_attempt') AS n"
    ).fetchone()["n"]
    check(forgotten == 5, "rate_limit_reset forgot 5 failures")


def main():
    with connect() as conn:
        flow_2fa_login(conn)
        flow_oidc(conn)
        flow_password_reset(conn)
        download_link(conn)
        rate_limit_2fa(conn)
    commit_matters()
    print("all answers right")


if __name__ == "__main__":
    main()
