# The reaper's pauses: on a server where nothing else writes it runs its
# batches back to back; while another session keeps committing
# transactions that write, it pauses between batches (a pause is the
# worker's only wait, reported in pg_stat_activity as wait event type
# 'Extension').  Both are sampled from a procedure that commits between
# samples, so that each sample reads a fresh pg_stat_activity.  (The
# procedures stop after 2 minutes, before background_psql's own timeout,
# so that a stuck reaper fails an assertion rather than the harness.)
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use RegstackTAP;

my $node = PostgreSQL::Test::Cluster->new('reaper_yield');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'regstack'
regstack.reaper_naptime = 1
regstack.reaper_batch_size = 500
regstack.reaper_enabled = off
# an autovacuum ANALYZE takes a transaction id: no other writer at all
autovacuum = off
});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION regstack;

-- Sample the reaper worker until the expired rows are gone: how many
-- samples found it running a pass, and how many of those found it pausing.
CREATE PROCEDURE sample_reaper(INOUT samples int, INOUT pauses int)
LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '2 minutes';
    waiting text;
BEGIN
    samples := 0;
    pauses := 0;
    WHILE clock_timestamp() < deadline LOOP
        SELECT wait_event_type INTO waiting FROM pg_stat_activity
         WHERE backend_type = 'regstack reaper';
        IF FOUND THEN
            samples := samples + 1;
            IF waiting = 'Extension' THEN
                pauses := pauses + 1;
            END IF;
        END IF;
        EXIT WHEN NOT EXISTS (SELECT FROM regstack.auth_ephemeral_tokens
                               WHERE subject = 'expired');
        COMMIT;
        PERFORM pg_sleep(0.002);
    END LOOP;
END
$$;

-- Commit one writing transaction (it takes a transaction id) every
-- millisecond or so, from before the expired rows come until they are gone.
CREATE PROCEDURE keep_writing()
LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '2 minutes';
    backlog boolean;
    seen boolean := false;
BEGIN
    WHILE clock_timestamp() < deadline LOOP
        PERFORM pg_current_xact_id();
        COMMIT;
        backlog := EXISTS (SELECT FROM regstack.auth_ephemeral_tokens
                            WHERE subject = 'expired');
        EXIT WHEN seen AND NOT backlog;
        seen := seen OR backlog;
        PERFORM pg_sleep(0.001);
    END LOOP;
END
$$;
});

# Switch the reaper on or off and wait until the server has the setting.
sub set_reaper
{
	my ($value) = @_;
	$node->safe_psql('postgres',
		"ALTER SYSTEM SET regstack.reaper_enabled = $value; SELECT pg_reload_conf()");
	$node->poll_query_until('postgres', 'SHOW regstack.reaper_enabled', $value)
	  or die "regstack.reaper_enabled did not become $value";
	return;
}

# Enable the reaper on a fresh backlog, sampling it from before it starts
# until the backlog is gone; returns (samples, pauses).
sub reap_and_sample
{
	insert_expired($node, 'postgres', 300000);
	my $sampler = $node->background_psql('postgres');
	$sampler->query_until(qr/sampling/,
		"\\echo sampling\n"
		  . "CALL sample_reaper(NULL, NULL);\n\\echo sampled\n");
	set_reaper('on');
	my $out = $sampler->query_until(qr/sampled/, '');
	$sampler->quit;
	set_reaper('off');
	$out =~ /^(\d+)\|(\d+)$/m or die "unexpected sampler output: $out";
	return ($1, $2);
}

# Nothing else writes: no pauses.
my ($samples, $pauses) = reap_and_sample();
note("quiet server: $samples samples, $pauses pauses");
cmp_ok($samples, '>', 0, 'quiet server: the pass was sampled');
is($pauses, 0, 'quiet server: the reaper never pauses');

# Another session commits writing transactions all along: pauses.
my $writer = $node->background_psql('postgres');
$writer->query_until(qr/writing/, "\\echo writing\nCALL keep_writing();\n");
($samples, $pauses) = reap_and_sample();
note("busy server: $samples samples, $pauses pauses");
cmp_ok($pauses, '>', 0, 'busy server: the reaper pauses between batches');
$writer->quit;

is($node->safe_psql('postgres', 'SELECT last_error IS NULL FROM regstack.reaper_status'),
	't', 'no error recorded');

$node->stop;
done_testing();
