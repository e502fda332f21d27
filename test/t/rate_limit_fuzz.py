#!/usr/bin/env python3
"""Randomized test of regstack's rate limits (run by test/t/022_rate_limit_fuzz.pl).

Sessions run random transactions of rate-limit calls -- checks that record,
checks with record => false followed by a record (the 2FA pattern), plain
records, resets, savepoints rolled back or released, commits and
rollbacks -- in READ COMMITTED, REPEATABLE READ and SERIALIZABLE, on keys
with and without history, while (in the multi-session mode) a canceller
cancels random backends at random moments and some transactions run with a
tiny statement_timeout.

It checks, and exits 1 with a message when any fails:
  - every call returns within --bound seconds (no spin, no lost wakeup);
  - every error is one the API documents for the situation: 40001 and
    40P01 (retryable), 57014 (a cancel or a statement timeout, only when
    one was sent); anything else (XX000, 23505, ...) is a failure;
  - with one session (--sessions 1) nothing may wait or fail at all;
  - afterwards: no window of length `within` holds more than `max_events`
    events of a limited key (only checks and the 2FA pattern record there);
    every key's log is numbered without gaps below its row's next_seq, with
    occurred_at never decreasing; no advisory lock of regstack is left.

With --storm it runs instead the storm that made 1.0 leak a lock: every
session calls rate_limit_check on one key (policy login_ip, max_events
1,000,000 an hour) with a 30 ms statement_timeout and a short pg_sleep in the
select list, so that timeouts land at every moment of a call; only 57014 is
expected; afterwards no regstack advisory lock may be held and a call on the
key must complete within 5 s.  It runs through PgBouncer in transaction mode
too (no prepared statements: psycopg 3 with prepare_threshold=None).

Usage: rate_limit_fuzz.py DSN [--storm] [--sessions N] [--seconds S] [--seed X] [--bound B]
"""

import argparse
import random
import sys
import threading
import time

import psycopg

MAX_EVENTS = 4
WITHIN = '2 seconds'
LIMITED_KEYS = ['lim%d' % i for i in range(4)]     # checks and the 2FA pattern only
FREE_KEYS = ['free%d' % i for i in range(2)]       # plain records too
LEVELS = ['READ COMMITTED', 'REPEATABLE READ', 'SERIALIZABLE']
EXPECTED = {'40001', '40P01'}


class Failure(Exception):
    pass


class Session:
    """One connection running random transactions."""

    def __init__(self, dsn, number, args, rng, stats):
        # A call that spins is cut by the server at the bound (57014 with
        # "statement timeout", a failure unless the test set a timeout).
        self.conn = psycopg.connect(dsn, autocommit=True,
                                    options='-c statement_timeout=%d' % (args.bound * 1000))
        self.number = number
        self.args = args
        self.rng = rng
        self.stats = stats
        self.pid = self.conn.execute('SELECT pg_backend_pid()').fetchone()[0]
        self.timeout_set = False

    def call(self, sql, params=()):
        """Run one statement, timed against the bound; returns its rows."""
        start = time.monotonic()
        try:
            cur = self.conn.execute(sql, params)
            return cur.fetchall() if cur.description else []
        finally:
            elapsed = time.monotonic() - start
            self.stats['max_call'] = max(self.stats['max_call'], elapsed)
            if elapsed > self.args.bound:
                raise Failure('session %d: %s took %.1f s (bound %.1f s)'
                              % (self.number, sql, elapsed, self.args.bound))

    def unit(self, key_pool):
        """One complete unit of work: a check, or the 2FA pattern, or a record."""
        rng = self.rng
        key = rng.choice(key_pool)
        choice = rng.random()
        if choice < 0.45:
            self.call("SELECT allowed FROM regstack.rate_limit_check(%s, 'fuzz', %s, %s)",
                      (key, MAX_EVENTS, WITHIN))
        elif choice < 0.85:
            allowed = self.call("SELECT allowed FROM regstack.rate_limit_check(%s, 'fuzz', %s, %s, record => false)",
                                (key, MAX_EVENTS, WITHIN))[0][0]
            if allowed and rng.random() < 0.8:
                self.call("SELECT regstack.rate_limit_record(%s, 'fuzz')", (key,))
        elif choice < 0.95:
            key = rng.choice(FREE_KEYS)
            self.call("SELECT regstack.rate_limit_record(%s, 'fuzz')", (key,))
        else:
            self.call("SELECT regstack.rate_limit_reset(%s, 'fuzz')", (key,))

    def transaction(self):
        """One random transaction; errors the API documents end it."""
        rng = self.rng
        level = rng.choice(LEVELS)
        key_pool = rng.sample(LIMITED_KEYS, 2)
        self.timeout_set = False
        try:
            self.call('BEGIN ISOLATION LEVEL ' + level)
            if self.args.sessions > 1 and rng.random() < 0.1:
                self.call("SET LOCAL statement_timeout = '%dms'" % rng.randint(1, 30))
                self.timeout_set = True
            for _ in range(rng.randint(1, 4)):
                kind = rng.random()
                if kind < 0.2:
                    self.call('SAVEPOINT sp')
                    self.unit(key_pool)
                    self.call(rng.choice(['ROLLBACK TO SAVEPOINT sp', 'RELEASE SAVEPOINT sp']))
                else:
                    self.unit(key_pool)
                if self.args.sessions > 1 and rng.random() < 0.2:
                    self.call('SELECT pg_sleep(%s)', (rng.random() * 0.02,))
            self.call(rng.choice(['COMMIT'] * 4 + ['ROLLBACK']))
            self.stats['transactions'] += 1
        except psycopg.Error as error:
            state = error.sqlstate
            if (state == '57014' and 'statement timeout' in str(error)
                    and not self.timeout_set):
                raise Failure('session %d: a call ran past the bound of %.0f s: %s'
                              % (self.number, self.args.bound, error))
            if self.args.sessions > 1 and (state in EXPECTED or state == '57014'):
                self.stats[state] = self.stats.get(state, 0) + 1
                self.rollback()
            else:
                raise Failure('session %d: unexpected error %s: %s' % (self.number, state, error))

    def rollback(self):
        """End the failed transaction; the canceller may cancel the ROLLBACK too."""
        for _ in range(10):
            try:
                self.conn.execute('ROLLBACK')
                return
            except psycopg.errors.QueryCanceled:
                continue
        raise Failure('session %d: could not roll back' % self.number)

    def run(self, deadline, failures):
        try:
            while time.monotonic() < deadline and not failures:
                self.transaction()
        except Failure as failure:
            failures.append(str(failure))
        except Exception as error:        # a bug in the test itself, or a lost connection
            failures.append('session %d: %r' % (self.number, error))


def canceller(dsn, pids, rng, deadline, failures, stats):
    """Cancel random sessions' current statements at random moments."""
    conn = psycopg.connect(dsn, autocommit=True)
    while time.monotonic() < deadline and not failures:
        time.sleep(rng.random() * 0.05)
        conn.execute('SELECT pg_cancel_backend(%s)', (rng.choice(pids),))
        stats['cancels_sent'] += 1
    conn.close()


def check_results(dsn):
    """The checks on the tables once every session has finished."""
    conn = psycopg.connect(dsn, autocommit=True)
    worst = conn.execute("""
        SELECT coalesce(max(n), 0) FROM (
          SELECT count(*) OVER (PARTITION BY key ORDER BY occurred_at
                                RANGE BETWEEN %s::interval - interval '1 microsecond'
                                      PRECEDING AND CURRENT ROW) AS n
            FROM regstack.auth_rate_limit_events
           WHERE key LIKE 'lim%%' AND event_type = 'fuzz') AS w""", (WITHIN,)).fetchone()[0]
    if worst > MAX_EVENTS:
        raise Failure('a window of %s holds %d events of a limited key (max %d)'
                      % (WITHIN, worst, MAX_EVENTS))
    faults = conn.execute("""
        SELECT count(*) FROM (
          SELECT e.seq, e.occurred_at, s.next_seq,
                 lag(e.occurred_at) OVER w AS prev, lag(e.seq) OVER w AS prev_seq,
                 max(e.seq) OVER (PARTITION BY e.key) AS last_seq,
                 min(e.seq) OVER (PARTITION BY e.key) AS first_seq
            FROM regstack.auth_rate_limit_events e
            JOIN regstack.auth_rate_limit_state s USING (key, event_type)
           WHERE event_type = 'fuzz'
          WINDOW w AS (PARTITION BY e.key ORDER BY e.seq)) AS l
         WHERE occurred_at < prev OR seq <> coalesce(prev_seq + 1, first_seq)
            OR last_seq <> next_seq - 1""").fetchone()[0]
    if faults:
        raise Failure('%d events break their key\'s log (gaps, order, next_seq)' % faults)
    orphans = conn.execute("""
        SELECT count(*) FROM regstack.auth_rate_limit_events e
         WHERE event_type = 'fuzz' AND NOT EXISTS (
               SELECT FROM regstack.auth_rate_limit_state s
                WHERE s.key = e.key AND s.event_type = e.event_type)""").fetchone()[0]
    if orphans:
        raise Failure('%d events have no state row' % orphans)
    locks = conn.execute("""
        SELECT count(*) FROM pg_locks
         WHERE locktype = 'advisory' AND objsubid IN (21076, 21077)""").fetchone()[0]
    if locks:
        raise Failure('%d regstack advisory locks are still held' % locks)
    events = conn.execute("""
        SELECT count(*) FROM regstack.auth_rate_limit_events WHERE event_type = 'fuzz'""").fetchone()[0]
    conn.close()
    return worst, events


def storm_session(dsn, number, rng, deadline, failures, stats, done, checked):
    """One session of the storm: short transactions cut by statement timeouts;
    then it stays connected (idle) until the locks have been checked."""
    conn = None
    try:
        conn = psycopg.connect(dsn, autocommit=True, prepare_threshold=None)
        while time.monotonic() < deadline and not failures:
            try:
                conn.execute('BEGIN')
                conn.execute("SET LOCAL statement_timeout = '30ms'")
                conn.execute("""SELECT pg_sleep(%s), allowed
                                  FROM regstack.rate_limit_check('storm', 'login_ip',
                                       max_events => 1000000, within => '1 hour')""",
                             (rng.random() * 0.03,))
                conn.execute('COMMIT')
                stats['transactions'] += 1
            except psycopg.Error as error:
                if error.sqlstate != '57014':
                    raise Failure('storm session %d: unexpected error %s: %s'
                                  % (number, error.sqlstate, error))
                stats['57014'] = stats.get('57014', 0) + 1
                # The timeout may have cut the COMMIT itself: end the
                # transaction in any case (a ROLLBACK outside one only warns).
                conn.execute('ROLLBACK')
    except Failure as failure:
        failures.append(str(failure))
    except Exception as error:
        failures.append('storm session %d: %r' % (number, error))
    finally:
        # Idle but connected: a session-level lock left by a cancelled call
        # (1.0's bug) would still be held now; closing would release it.
        done.wait()
        checked.wait()
        if conn is not None:
            conn.close()


def storm(args, seed):
    """The storm of statement timeouts on one key (see the module's docstring)."""
    stats = {'transactions': 0}
    failures = []
    deadline = time.monotonic() + args.seconds
    done = threading.Barrier(args.sessions + 1)
    checked = threading.Event()
    threads = [threading.Thread(target=storm_session,
                                args=(args.dsn, i, random.Random(seed + i), deadline, failures,
                                      stats, done, checked))
               for i in range(args.sessions)]
    for thread in threads:
        thread.start()
    done.wait()
    # Every storm session is idle and still connected: none may hold a lock.
    conn = psycopg.connect(args.dsn, autocommit=True, prepare_threshold=None)
    locks = conn.execute("""SELECT count(*) FROM pg_locks
                             WHERE locktype = 'advisory' AND objsubid IN (21076, 21077)""").fetchone()[0]
    if locks:
        failures.append('%d regstack advisory locks are held by idle sessions after the storm' % locks)
    checked.set()
    for thread in threads:
        thread.join()
    if not failures:
        try:
            with conn.transaction():
                conn.execute("SET LOCAL statement_timeout = '5s'")
                conn.execute("""SELECT allowed FROM regstack.rate_limit_check('storm', 'login_ip',
                                     max_events => 1000000, within => '1 hour')""")
        except psycopg.Error as error:
            failures.append('a call on the key after the storm failed: %s' % error)
    conn.close()
    print('stats: ' + ', '.join('%s=%s' % kv for kv in sorted(stats.items())))
    if failures:
        print('FAILED (seed %d): %s' % (seed, failures[0]))
        return 1
    print('ok')
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('dsn')
    parser.add_argument('--sessions', type=int, default=8)
    parser.add_argument('--seconds', type=float, default=10)
    parser.add_argument('--seed', type=int, default=None)
    parser.add_argument('--bound', type=float, default=20)
    parser.add_argument('--storm', action='store_true')
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    print('seed %d, %d sessions, %.0f s%s' % (seed, args.sessions, args.seconds,
                                               ', storm' if args.storm else ''))
    if args.storm:
        return storm(args, seed)

    # Keys with history: a committed event on half of the limited keys.
    setup = psycopg.connect(args.dsn, autocommit=True)
    for key in LIMITED_KEYS + FREE_KEYS:
        setup.execute("SELECT regstack.rate_limit_reset(%s, 'fuzz')", (key,))
    for key in LIMITED_KEYS[::2] + FREE_KEYS[:1]:
        setup.execute("SELECT allowed FROM regstack.rate_limit_check(%s, 'fuzz', %s, %s)",
                      (key, MAX_EVENTS, WITHIN))
    setup.close()

    stats = {'transactions': 0, 'max_call': 0.0, 'cancels_sent': 0}
    failures = []
    sessions = [Session(args.dsn, i, args, random.Random(seed + i), stats)
                for i in range(args.sessions)]
    deadline = time.monotonic() + args.seconds
    threads = [threading.Thread(target=s.run, args=(deadline, failures)) for s in sessions]
    if args.sessions > 1:
        threads.append(threading.Thread(
            target=canceller,
            args=(args.dsn, [s.pid for s in sessions], random.Random(seed - 1),
                  deadline, failures, stats)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for session in sessions:
        session.conn.close()
    if not failures:
        try:
            worst, events = check_results(args.dsn)
            stats['worst_window'] = worst
            stats['events'] = events
        except Failure as failure:
            failures.append(str(failure))
    print('stats: ' + ', '.join('%s=%s' % (k, round(v, 3) if isinstance(v, float) else v)
                                for k, v in sorted(stats.items())))
    if failures:
        print('FAILED (seed %d): %s' % (seed, failures[0]))
        return 1
    print('ok')
    return 0


if __name__ == '__main__':
    sys.exit(main())
