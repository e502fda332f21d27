# Rate limits under real concurrency: 32 sessions hammer one key.
#
#  1. max 10 in an hour, 640 calls from 32 sessions: exactly 10 allowed.
#  2. max 10 in a 1-second sliding window for 4 seconds: in no window of
#     one second do the recorded events exceed 10, and the limit is reached.
#  3. A hot key far from its limit (max 1,000,000): 32 sessions record at
#     once (one at a time: the key's state row serializes them), every
#     call is allowed and recorded, and the log is numbered without gaps.
#  4. Mixed calls on three keys, max 5 in a 2-second window, for 6
#     seconds: recording checks, check-verify-record transactions, checks
#     rolled back, and checks rolled back to a savepoint then repeated.  No
#     2-second window holds more than 5 events of a key, and no call fails.
#
# The sessions run as an application role that has only EXECUTE on the
# functions, as in production.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('rate_limit_sessions');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'regstack'
max_connections = 60
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION regstack;
CREATE ROLE app LOGIN;
GRANT USAGE ON SCHEMA regstack TO app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA regstack TO app;
CREATE TABLE results (allowed boolean, remaining int);
GRANT INSERT ON results TO app;
});

# 1. 32 sessions x 20 calls on one key, max 10 per hour.
$node->pgbench(
	'--no-vacuum --client=32 --jobs=4 --transactions=20 --username=app',
	0,
	[qr{processed: 640/640}],
	[qr{^$}],
	'32 sessions hammer one key',
	{
		'020_one_key.sql' => q{
INSERT INTO results
SELECT allowed, remaining
  FROM regstack.rate_limit_check('hot', 'tap', 10, '1 hour');
}
	});

is($node->safe_psql('postgres', 'SELECT count(*) FROM results'),
	'640', 'every call answered');
is($node->safe_psql('postgres',
		'SELECT count(*) FROM results WHERE allowed'),
	'10', 'exactly 10 of 640 calls allowed');
is($node->safe_psql('postgres',
		'SELECT string_agg(remaining::text, \',\' ORDER BY remaining DESC) FROM results WHERE allowed'),
	'9,8,7,6,5,4,3,2,1,0', 'each allowed call saw the ones before it');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM regstack.auth_rate_limit_events WHERE key = 'hot'"),
	'10', 'exactly 10 events recorded');

# 2. A sliding window under load: max 10 per second, for 4 seconds.
$node->pgbench(
	'--no-vacuum --client=32 --jobs=4 --time=4 --username=app',
	0,
	[qr{processed: [1-9]}],
	[qr{^$}],
	'32 sessions on a 1-second window',
	{
		'020_sliding.sql' => q{
SELECT allowed FROM regstack.rate_limit_check('slide', 'tap', 10, '1 second');
}
	});

my $worst = $node->safe_psql('postgres', q{
SELECT max(n) FROM (
  SELECT count(*) OVER (ORDER BY occurred_at
                        RANGE BETWEEN '999999 microseconds' PRECEDING AND CURRENT ROW) AS n
    FROM regstack.auth_rate_limit_events WHERE key = 'slide') AS w
});
is($worst, '10', 'no 1-second window holds more than 10 events, and 10 is reached');
my $total = $node->safe_psql('postgres',
	"SELECT count(*) FROM regstack.auth_rate_limit_events WHERE key = 'slide'");
cmp_ok($total, '>=', 30, "events allowed over 4 seconds ($total)");
# A key's log: numbered from 0 without gaps, up to the state row's
# next_seq, with occurred_at never decreasing along seq.
my $log_faults = q{
SELECT count(*) FROM (
  SELECT e.seq, e.occurred_at, s.next_seq,
         lag(e.occurred_at) OVER w AS prev, lag(e.seq) OVER w AS prev_seq,
         max(e.seq) OVER (PARTITION BY e.key) AS last_seq
    FROM regstack.auth_rate_limit_events e
    JOIN regstack.auth_rate_limit_state s USING (key, event_type)
   WHERE key = $1
  WINDOW w AS (PARTITION BY e.key ORDER BY e.seq)) AS l
 WHERE occurred_at < prev OR seq <> coalesce(prev_seq + 1, 0)
    OR last_seq <> next_seq - 1
};
is($node->safe_psql('postgres', $log_faults =~ s/\$1/'slide'/r), '0',
	"the sliding key's log is gapless, occurred_at never decreasing");

# 3. A hot key far from its limit: 32 sessions x 50 calls.
$node->pgbench(
	'--no-vacuum --client=32 --jobs=4 --transactions=50 --username=app',
	0,
	[qr{processed: 1600/1600}],
	[qr{^$}],
	'32 sessions record on one key at once',
	{
		'020_far.sql' => q{
SELECT remaining FROM regstack.rate_limit_check('far', 'tap', 1000000, '1 hour')
 WHERE allowed \gset
}
	});
is($node->safe_psql('postgres',
		"SELECT count(*) FROM regstack.auth_rate_limit_events WHERE key = 'far'"),
	'1600', 'every call allowed and recorded');
is($node->safe_psql('postgres', $log_faults =~ s/\$1/'far'/r), '0',
	"the hot key's log is gapless, occurred_at never decreasing");
is($node->safe_psql('postgres', q{
SELECT allowed, remaining FROM regstack.rate_limit_check('far', 'tap', 1600, '1 hour', record => false)
}), 'f|0', 'a check counts every event');

# 4. Mixed calls on three keys.
$node->pgbench(
	'--no-vacuum --client=32 --jobs=4 --time=6 --username=app',
	0,
	[qr{number of failed transactions: 0 \(0\.000%\)}],
	[qr{^$}],
	'32 sessions mix calls on three keys',
	{
		'020_mix_check.sql@10' => q{
\set k random(1, 3)
SELECT allowed FROM regstack.rate_limit_check('mix' || :k, 'tap', 5, '2 seconds');
},
		'020_mix_verify.sql@3' => q{
\set k random(1, 3)
BEGIN;
SELECT allowed AS ok FROM regstack.rate_limit_check('mix' || :k, 'tap', 5, '2 seconds', record => false) \gset
\if :ok
SELECT regstack.rate_limit_record('mix' || :k, 'tap');
\endif
COMMIT;
},
		'020_mix_rollback.sql@2' => q{
\set k random(1, 3)
BEGIN;
SELECT allowed FROM regstack.rate_limit_check('mix' || :k, 'tap', 5, '2 seconds');
ROLLBACK;
},
		'020_mix_savepoint.sql@2' => q{
\set k random(1, 3)
BEGIN;
SAVEPOINT a;
SELECT allowed FROM regstack.rate_limit_check('mix' || :k, 'tap', 5, '2 seconds');
ROLLBACK TO SAVEPOINT a;
SELECT allowed FROM regstack.rate_limit_check('mix' || :k, 'tap', 5, '2 seconds');
COMMIT;
}
	});
is($node->safe_psql('postgres', q{
SELECT string_agg(key || '=' || worst, ',' ORDER BY key) FROM (
  SELECT key, max(n) AS worst FROM (
    SELECT key, count(*) OVER (PARTITION BY key ORDER BY occurred_at
                               RANGE BETWEEN '1999999 microseconds' PRECEDING AND CURRENT ROW) AS n
      FROM regstack.auth_rate_limit_events WHERE key LIKE 'mix%') AS w
   GROUP BY key) AS k
}), 'mix1=5,mix2=5,mix3=5',
	'no 2-second window of a key holds more than 5 events, and 5 is reached');
is($node->safe_psql('postgres', $log_faults =~ s/key = \$1/key LIKE 'mix%'/r), '0',
	"the mixed keys' logs are gapless, occurred_at never decreasing");

$node->stop;
done_testing();
