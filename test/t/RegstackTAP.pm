# test/t/RegstackTAP.pm: helpers shared by regstack's TAP tests.
package RegstackTAP;
use strict;
use warnings;
use Exporter 'import';
our @EXPORT = qw(insert_expired gate_close gate_open wait_worker_gated);

# Insert $n tokens that expired a minute ago (subject 'expired') straight
# into regstack's table in database $db of $node.  With $tag, token i's
# hash is sha256($tag || i), so a test can address it; without, the hashes
# are made unique from the clock.
sub insert_expired
{
	my ($node, $db, $n, $tag) = @_;
	my $seed = defined $tag ? "'$tag'" : 'clock_timestamp()::text';
	$node->safe_psql($db, qq{
		INSERT INTO regstack.auth_ephemeral_tokens
		    (subject_tag, token_hash, token_type, subject, created_at, expires_at)
		SELECT 0, sha256(convert_to($seed || i, 'UTF8')),
		       'pre_auth', 'expired',
		       now() - interval '10 minutes', now() - interval '1 minute'
		  FROM generate_series(1, $n) AS i});
}

# A gate that holds a reaper batch in the middle of its transaction: with
# synchronous_standby_names naming a standby that never connects, a
# transaction's commit waits (wait event SyncRep) after its rows are
# deleted and while it still holds its locks; its deletes are not yet
# visible to others, who find the rows held by a running transaction.
# The test's own sessions must commit without waiting: run them with
# $ENV{PGOPTIONS} = '-c synchronous_commit=local'.  Only the reaper (and
# any session that commits with synchronous_commit on) is held.
sub gate_close
{
	my ($node) = @_;
	$node->safe_psql('postgres', "ALTER SYSTEM SET synchronous_standby_names = 'regstack_gate'");
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	$node->poll_query_until('postgres', 'SHOW synchronous_standby_names', 'regstack_gate')
	  or die 'the gate did not close';
}

# Open the gate: the held commits complete.
sub gate_open
{
	my ($node) = @_;
	$node->safe_psql('postgres', 'ALTER SYSTEM RESET synchronous_standby_names');
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
}

# Wait until a reaper worker in database $db is held at the gate.
sub wait_worker_gated
{
	my ($node, $db) = @_;
	return $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity
		  WHERE backend_type = 'regstack reaper' AND datname = '$db'
		    AND wait_event = 'SyncRep'");
}

1;
