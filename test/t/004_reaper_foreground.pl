# The reaper and foreground calls stay out of each other's way: while a
# reaper batch is held in the middle of its transaction (rows deleted and
# held, not yet committed), issue, consume, peek, attach and revoke all
# complete; and the reaper skips rows a foreground transaction has locked
# instead of waiting for them.  The batch is held at its commit by the
# gate of RegstackTAP.pm (a synchronous standby that never answers); the
# test's own sessions commit locally.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use RegstackTAP;

my $node = PostgreSQL::Test::Cluster->new('reaper_foreground');
$node->init(allows_streaming => 1);    # max_wal_senders > 0: the gate needs synchronous replication
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'regstack'
regstack.reaper_naptime = 1
regstack.reaper_batch_size = 100
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION regstack');

# With one expired row locked by a foreground transaction: the reaper
# deletes the other expired rows, its passes go on (it skips the row, it
# does not wait), and it records no error.
sub locked_row_is_skipped
{
	my ($label) = @_;
	ok( $node->poll_query_until('postgres',
			"SELECT count(*) = 1 FROM regstack.auth_ephemeral_tokens WHERE subject = 'expired'"),
		"$label: the reaper deletes everything but the locked row");
	my $passes = $node->safe_psql('postgres', 'SELECT passes FROM regstack.reaper_status');
	ok( $node->poll_query_until('postgres',
			"SELECT passes >= $passes + 2 FROM regstack.reaper_status"),
		"$label: passes go on while the row is locked (no waiting)");
	is($node->safe_psql('postgres', 'SELECT last_error IS NULL FROM regstack.reaper_status'),
		't', "$label: no error (no lock timeout) from skipping");
	return;
}

# The locker commits: the row it held goes too.
sub locked_row_goes
{
	my ($label, $locker) = @_;
	$locker->query_safe('COMMIT');
	$locker->quit;
	ok( $node->poll_query_until('postgres',
			"SELECT count(*) = 0 FROM regstack.auth_ephemeral_tokens WHERE subject = 'expired'"),
		"$label: the row goes once unlocked");
	return;
}

# Live tokens to use while the reaper is held.
my @live = map {
	$node->safe_psql('postgres',
		"SELECT regstack.issue_token('pre_auth', subject => 'live$_')")
} 1 .. 3;

# Hold the reaper in the middle of a batch.
$ENV{PGOPTIONS} = '-c synchronous_commit=local';
gate_close($node);
insert_expired($node, 'postgres', 1000, 'a');
ok(wait_worker_gated($node, 'postgres'),
	'a reaper batch is held mid-transaction, and shows in pg_stat_activity');
is( $node->safe_psql('postgres',
		"SELECT pid IS NOT NULL AND last_pass_end IS NULL FROM regstack.reaper_status"),
	't', 'reaper_status shows the running worker');

# Foreground calls complete meanwhile.  statement_timeout only turns a
# hang into a failure; it is not a timing assertion.
my $guard = "SET statement_timeout = '60s';";
is( $node->safe_psql('postgres',
		"$guard SELECT subject FROM regstack.consume_token('$live[0]', 'pre_auth')"),
	'live1', 'consume_token completes during a reaper batch');
is( $node->safe_psql('postgres',
		"$guard SELECT subject FROM regstack.peek_token('$live[1]', 'pre_auth')"),
	'live2', 'peek_token completes during a reaper batch');
is( $node->safe_psql('postgres',
		"$guard SELECT regstack.attach_result('$live[1]', 'pre_auth', 'r')"),
	't', 'attach_result completes during a reaper batch');
is( $node->safe_psql('postgres',
		"$guard SELECT length(regstack.issue_token('pre_auth', subject => 'new'))"),
	'48', 'issue_token completes during a reaper batch');
is( $node->safe_psql('postgres',
		"$guard SELECT regstack.revoke_tokens('live3')"),
	'1', 'revoke_tokens completes during a reaper batch');
is( $node->safe_psql('postgres',
		"$guard SELECT count(*) FROM regstack.purge_expired() WHERE tokens_deleted >= 0"),
	'1', 'purge_expired completes during a reaper batch (it skips the locked rows)');

# A foreground transaction locks one expired row (as a consume_token in
# progress would hold its row) while the reaper is still held.
insert_expired($node, 'postgres', 500, 'b');
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN');
is( $locker->query_safe(q{
	SELECT token_type FROM regstack.auth_ephemeral_tokens
	 WHERE subject = 'expired' AND token_hash = sha256(convert_to('b1', 'UTF8'))
	   FOR UPDATE}),
	'pre_auth', 'a foreground transaction locks an expired row');

# Released, the reaper finishes, skipping the locked row rather than
# waiting for it.
gate_open($node);
locked_row_is_skipped('held pass released');
locked_row_goes('held pass released', $locker);
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM regstack.auth_ephemeral_tokens WHERE subject = 'live2'"),
	'1', 'live tokens were never touched');

# The same with the row locked before the reaper comes: the reaper is off
# (and no worker running) while the rows are made and one is locked, so
# that it cannot take that row first.
$node->safe_psql('postgres', 'ALTER SYSTEM SET regstack.reaper_enabled = off');
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok( $node->poll_query_until('postgres',
		"SELECT pid IS NULL FROM regstack.reaper_status"),
	'reaper off, no worker running');
insert_expired($node, 'postgres', 300, 'd');
$locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN');
is( $locker->query_safe(q{
	SELECT token_type FROM regstack.auth_ephemeral_tokens
	 WHERE subject = 'expired' AND token_hash = sha256(convert_to('d1', 'UTF8'))
	   FOR UPDATE}),
	'pre_auth', 'a foreground transaction locks an expired row');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET regstack.reaper_enabled');
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
locked_row_is_skipped('row locked first');
is( $node->safe_psql('postgres',
		"$guard SELECT tokens_deleted FROM regstack.purge_expired()"),
	'0', 'purge_expired skips the locked row instead of waiting');
locked_row_goes('row locked first', $locker);

# A failing pass: a session holds an ACCESS EXCLUSIVE lock on the table,
# the reaper's batch gives up (its lock_timeout), the error is logged with
# its context and recorded in reaper_status, and the next naptime tries
# again; the launcher stays, nothing crashes.
my $launcher = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'regstack launcher'");
insert_expired($node, 'postgres', 100, 'c');
my $offset = -s $node->logfile;
my $blocker = $node->background_psql('postgres');
$blocker->query_safe('BEGIN');
$blocker->query_safe('LOCK TABLE regstack.auth_ephemeral_tokens IN ACCESS EXCLUSIVE MODE');
$offset = $node->wait_for_log(
	qr/WARNING:  canceling statement due to lock timeout.*?CONTEXT:  regstack reaper deleting expired tokens in database "postgres"/s,
	$offset);
ok(1, 'a lock timeout is logged as a WARNING with the reaper context');
is( $node->safe_psql('postgres',
		'SELECT last_error, last_error_time IS NOT NULL FROM regstack.reaper_status'),
	'canceling statement due to lock timeout|t',
	'the error is recorded in reaper_status');
$node->wait_for_log(qr/WARNING:  canceling statement due to lock timeout/, $offset);
ok(1, 'the pass is retried next naptime');
$blocker->query_safe('COMMIT');
$blocker->quit;
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM regstack.auth_ephemeral_tokens WHERE subject = 'expired'"),
	'once the lock is gone, the rows go');
is( $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'regstack launcher'"),
	$launcher, 'the launcher survived the failing passes');
ok(!$node->log_contains(qr/terminated by signal|PANIC|TRAP|exited with exit code/),
	'no process crashed or exited abnormally');

$node->stop;
done_testing();
