# Randomized rate-limit sessions (test/t/rate_limit_fuzz.py): random
# sequences of checks (record true and false), records, resets,
# savepoints, rollbacks and cancels, in all three isolation levels, on keys
# with and without history, with regstack preloaded and not.  One session
# alone must never wait or fail; eight sessions with a canceller may see
# only 40001, 40P01 and 57014; every call returns within a bound, no window
# holds more than max_events events, every key's log stays gapless, and no
# lock is left.  The seed is printed; rerun with --seed to reproduce.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use File::Spec;

my $fuzz = File::Spec->catfile($FindBin::Bin, 'rate_limit_fuzz.py');

foreach my $preload (1, 0)
{
	my $label = $preload ? 'preloaded' : 'not preloaded';
	my $node = PostgreSQL::Test::Cluster->new($preload ? 'fuzz_preload' : 'fuzz_plain');
	$node->init;
	$node->append_conf('postgresql.conf', "max_connections = 40\n"
		  . ($preload ? "shared_preload_libraries = 'regstack'\nregstack.reaper_enabled = off\n" : ''));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION regstack');
	my $dsn = 'host=' . $node->host . ' port=' . $node->port . ' dbname=postgres';
	foreach my $run ([ 1, 6 ], [ 8, 15 ])
	{
		my ($sessions, $seconds) = @$run;
		my ($stdout, $stderr);
		my $ok = IPC::Run::run([ 'python3', $fuzz, $dsn, '--sessions', $sessions,
				'--seconds', $seconds, '--bound', '20' ],
			'>', \$stdout, '2>', \$stderr);
		ok($ok, "$label, $sessions session(s) for $seconds s") or diag("$stdout\n$stderr");
		note($stdout);
	}
	$node->stop;
}
done_testing();
