# The reaper's purge of rate-limit rows over many batches: stale events
# and state rows go, events still inside a window someone could ask about
# and live state rows stay, and the pass reads the events table once
# rather than from its start in every batch (each batch resumes after the
# last row the one before deleted).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('reaper_events');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'regstack'
regstack.reaper_naptime = 3600
regstack.reaper_batch_size = 100
regstack.reaper_enabled = off
regstack.event_retention = 1h
autovacuum = off
});
$node->start;

# 4,000 events: every other one stale (a type without a policy, two days
# old; 2,000 in all, spread through the table), the others an hour
# younger than their cutoff.  login_attempt's policy window is 15 minutes:
# one event 20 minutes old goes, one 10 minutes old stays.  State rows:
# 1,000 stale, 1,000 live.
$node->safe_psql('postgres', q{
CREATE EXTENSION regstack;
INSERT INTO regstack.auth_rate_limit_events (key, event_type, seq, occurred_at)
SELECT 'k' || i, 'custom', 0,
       CASE WHEN i % 2 = 1 THEN now() - interval '2 days' ELSE now() END
  FROM generate_series(1, 4000) AS i;
INSERT INTO regstack.auth_rate_limit_events (key, event_type, seq, occurred_at) VALUES
    ('u', 'login_attempt', 0, now() - interval '20 minutes'),
    ('u', 'login_attempt', 1, now() - interval '10 minutes');
INSERT INTO regstack.auth_rate_limit_state
    (key, event_type, next_seq, start_seq, last_at, clock_at)
SELECT 's' || i, 'custom', 1, 0,
       CASE WHEN i % 2 = 1 THEN now() - interval '2 days' ELSE now() END, now()
  FROM generate_series(1, 2000) AS i;
});

sub events_read
{
	return $node->safe_psql('postgres',
		"SELECT seq_tup_read FROM pg_stat_user_tables
		  WHERE relid = 'regstack.auth_rate_limit_events'::regclass");
}

my $read_before = events_read();
my $offset = -s $node->logfile;
# Turning the reaper on starts a round at once; the naptime is an hour, so
# that exactly one pass runs.
$node->safe_psql('postgres', q{
ALTER SYSTEM SET regstack.reaper_enabled = on;
SELECT pg_reload_conf();
});
$node->wait_for_log(
	qr/LOG:  regstack reaper deleted 0 expired tokens and 3001 stale rate-limit events in database "postgres"/,
	$offset);
ok(1, 'one pass deletes the 2,001 stale events and the 1,000 stale state rows');

# The worker reports its statistics when it exits; the pass is over once
# its line is logged, and the count appears when the worker has gone.
# (Read before the checks below, which scan the table themselves.)
ok( $node->poll_query_until('postgres', q{
SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'regstack reaper'}),
	'the worker has exited');
my $read = events_read() - $read_before;
cmp_ok($read, '<=', 2 * 4002,
	"the pass read the events table about once ($read rows for 4,002)");

is( $node->safe_psql('postgres', q{
SELECT count(*) FILTER (WHERE occurred_at < now() - interval '1 day'),
       count(*) FILTER (WHERE event_type = 'custom'),
       string_agg(seq::text, ',') FILTER (WHERE event_type = 'login_attempt')
  FROM regstack.auth_rate_limit_events}),
	'0|2000|1',
	'no stale event is left; the live ones and the one inside its policy window stay');
is( $node->safe_psql('postgres', q{
SELECT count(*), count(*) FILTER (WHERE last_at < now() - interval '1 day')
  FROM regstack.auth_rate_limit_state}),
	'1000|0',
	'stale state rows are gone, live ones stay');
# A pass takes a tenth of batch_size until ten looks in a row (after
# batches that deleted rows) saw no other writer: here one empty tokens
# batch, ten batches of 10 events and 30 of up to 100 (41; nine more for
# each look that saw another writer).  32 batches would mean full batches
# from the start, 300 batches of 10 would mean they never grew.
like(slurp_file($node->logfile, $offset), qr/DETAIL:  (4\d|5\d) batches/,
	'the pass took ten batches of 10 rows, then batches of 100');

$node->stop;
done_testing();
