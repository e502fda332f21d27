# Rate limits without preloading regstack: the decision lock is then a
# session-level advisory lock (objsubid 21077) instead of a lightweight lock
# in shared memory.  Checks that it keeps limits exact under concurrency,
# lets calls on a hot key record at once in several lanes, and is released
# after every call, also when the call fails under it.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('rate_limit_no_preload');
$node->init;
$node->append_conf('postgresql.conf', "max_connections = 40");
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION regstack;
CREATE TABLE results (allowed boolean);
});
is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'), '',
	'regstack is not preloaded');

# 16 sessions x 20 calls on one key, max 10 per hour: exactly 10 allowed.
$node->pgbench(
	'--no-vacuum --client=16 --jobs=4 --transactions=20',
	0,
	[qr{processed: 320/320}],
	[qr{^$}],
	'16 sessions hammer one key',
	{
		'021_exact.sql' => q{
INSERT INTO results
SELECT allowed FROM regstack.rate_limit_check('exact', 'tap', 10, '1 hour');
}
	});
is($node->safe_psql('postgres', 'SELECT count(*) FILTER (WHERE allowed), count(*) FROM results'),
	'10|320', 'exactly 10 of 320 calls allowed');

# Far from the limit, the sessions record at once in several lanes.
$node->pgbench(
	'--no-vacuum --client=16 --jobs=4 --transactions=50',
	0,
	[qr{processed: 800/800}],
	[qr{^$}],
	'16 sessions record on one key at once',
	{
		'021_far.sql' => q{
SELECT remaining FROM regstack.rate_limit_check('far', 'tap', 1000000, '1 hour')
 WHERE allowed \gset
}
	});
is($node->safe_psql('postgres',
		"SELECT count(*) FROM regstack.auth_rate_limit_events WHERE key = 'far'"),
	'800', 'every call allowed and recorded');
cmp_ok($node->safe_psql('postgres',
		"SELECT count(*) FROM regstack.auth_rate_limit_state WHERE key = 'far'"),
	'>=', 2, 'the key got several lanes');

# A call that fails under the decision lock (its event's seq is taken by a
# row written behind regstack's back: 23505) releases the lock: the same
# session then finds none held and calls again.
$node->safe_psql('postgres', q{
INSERT INTO regstack.auth_rate_limit_events (key, event_type, lane, seq, occurred_at)
VALUES ('dup', 'tap', 0, 0, now());
INSERT INTO regstack.auth_rate_limit_state (key, event_type, lane, next_seq, start_seq, clock_at)
VALUES ('dup', 'tap', 0, 0, 0, now());
});
my ($ret, $out, $err) = $node->psql('postgres', q{
SELECT allowed FROM regstack.rate_limit_check('dup', 'tap', 10, '1 hour');
SELECT count(*) FROM pg_locks
 WHERE locktype = 'advisory' AND objsubid = 21077 AND pid = pg_backend_pid();
SELECT regstack.rate_limit_reset('dup');
SELECT allowed FROM regstack.rate_limit_check('dup', 'tap', 10, '1 hour');
}, on_error_stop => 0);
like($err, qr/duplicate key value violates unique constraint/,
	'the call failed under the decision lock');
is($out, "0\n1\nt", 'the lock was released; the next call works');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 21077"),
	'0', 'no decision lock is left anywhere');

$node->stop;
done_testing();
