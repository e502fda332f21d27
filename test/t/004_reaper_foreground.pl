# The reaper and foreground calls stay out of each other's way: while a
# reaper batch is held in the middle of its transaction (rows locked,
# some deleted), issue, consume, peek, attach and revoke all complete; and
# the reaper skips rows a foreground transaction has locked instead of
# waiting for them.  The batch is held by a DELETE trigger, which sends
# the reaper down its SQL path (purge.c); the trigger is then dropped and
# the skipping is checked again on the direct path.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use RegstackTAP;

my $node = PostgreSQL::Test::Cluster->new('reaper_foreground');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'regstack'
regstack.naptime = 1
regstack.batch_size = 100
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

# Hold the reaper in the middle of a batch: a row trigger makes the reaper
# (only) wait on an advisory lock the test holds (with no lock_timeout:
# the worker's own would end the wait).
$node->safe_psql('postgres', q{
	CREATE FUNCTION public.reaper_gate() RETURNS trigger LANGUAGE plpgsql
		    SET lock_timeout = 0 AS $$
	BEGIN
	    IF current_setting('application_name') = 'regstack reaper' THEN
	        PERFORM pg_advisory_xact_lock_shared(4242);
	    END IF;
	    RETURN OLD;
	END $$;
	CREATE TRIGGER reaper_gate BEFORE DELETE ON regstack.auth_ephemeral_tokens
	    FOR EACH ROW WHEN (OLD.subject = 'expired')
	    EXECUTE FUNCTION public.reaper_gate();});
my $holder = $node->background_psql('postgres');
$holder->query_safe('SELECT pg_advisory_lock(4242)');
insert_expired($node, 'postgres', 1000, 'a');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity
		  WHERE backend_type = 'regstack reaper' AND application_name = 'regstack reaper'
		    AND datname = 'postgres' AND wait_event = 'advisory'"),
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
$holder->query_safe('SELECT pg_advisory_unlock(4242)');
$holder->quit;
locked_row_is_skipped('SQL path (held pass released)');
locked_row_goes('SQL path', $locker);
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM regstack.auth_ephemeral_tokens WHERE subject = 'live2'"),
	'1', 'live tokens were never touched');

# Without the trigger the reaper deletes directly (no SQL): the same again.
# The reaper is off (and no worker running) while the rows are made and
# one is locked, so that it cannot take that row first.
$node->safe_psql('postgres', 'DROP TRIGGER reaper_gate ON regstack.auth_ephemeral_tokens');
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
locked_row_is_skipped('direct path');
is( $node->safe_psql('postgres',
		"$guard SELECT tokens_deleted FROM regstack.purge_expired()"),
	'0', 'direct path: purge_expired skips the locked row instead of waiting');
locked_row_goes('direct path', $locker);

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
