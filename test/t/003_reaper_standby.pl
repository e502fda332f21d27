# On a streaming standby the reaper deletes nothing (and does not even run);
# once the standby is promoted, reaping starts by itself.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('reaper_primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'regstack'
regstack.reaper_naptime = 1
});
$primary->start;
$primary->safe_psql('postgres', 'CREATE EXTENSION regstack');
$primary->backup('backup');

my $standby = PostgreSQL::Test::Cluster->new('reaper_standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->start;

# The primary stops reaping, so that expired rows reach the standby.
$primary->safe_psql('postgres', 'ALTER SYSTEM SET regstack.reaper_enabled = off');
$primary->reload;
$primary->poll_query_until('postgres', 'SHOW regstack.reaper_enabled', 'off')
  or die 'primary reaper not disabled';
# Let any round that started before the reload finish.
$primary->poll_query_until('postgres',
	"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'regstack reaper'")
  or die 'a reaper worker is still running on the primary';
$primary->safe_psql('postgres', q{
	INSERT INTO regstack.auth_ephemeral_tokens
	    (subject_tag, token_hash, token_type, subject, created_at, expires_at)
	SELECT 0, sha256(convert_to('s' || i, 'UTF8')), 'pre_auth', 'expired',
	       now() - interval '10 minutes', now() - interval '1 minute'
	  FROM generate_series(1, 1000) AS i});
$primary->wait_for_catchup($standby);

is( $standby->safe_psql('postgres',
		"SELECT count(*) FROM regstack.auth_ephemeral_tokens WHERE subject = 'expired'"),
	'1000', 'expired rows have reached the standby');
is( $standby->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'regstack%'"),
	'0', 'no reaper process on the standby');
is($standby->safe_psql('postgres', 'SELECT count(*) FROM regstack.reaper_status'),
	'0', 'no reaper pass on the standby');

# Promotion: the launcher starts by itself and the rows go.
$primary->stop;
$standby->promote;
ok( $standby->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM regstack.auth_ephemeral_tokens WHERE subject = 'expired'"),
	'after promotion the reaper deletes expired rows');
ok( $standby->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'regstack launcher'"),
	'the launcher runs on the promoted standby');
# (the walreceiver's FATALs after the primary stopped are expected)
ok(!$standby->log_contains(qr/(ERROR|FATAL|PANIC|WARNING): .*regstack|terminated by signal|exited with exit code/),
	'no reaper error on the standby')
  or diag(slurp_file($standby->logfile));

$standby->stop;
done_testing();
