# The reaper's statements are never JIT-compiled, on a server where JIT
# would compile every statement (jit_above_cost = 0).  The worker turns
# off sequential scans, whose penalty cost used to put its scans of the
# policies and of the rate-limit tables over jit_above_cost with the
# default settings: each pass then spent about 0.4 s of CPU compiling.
# auto_explain logs the plan of every statement, the worker's included;
# a compiled plan ends with a "JIT:" section.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use RegstackTAP;

my $node = PostgreSQL::Test::Cluster->new('reaper_no_jit');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'regstack, auto_explain'
auto_explain.log_min_duration = 0
auto_explain.log_nested_statements = on
jit = on
jit_above_cost = 0
jit_inline_above_cost = -1
jit_optimize_above_cost = -1
regstack.reaper_naptime = 1
});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION regstack;
SELECT regstack.rate_limit_record('alice', 'login_attempt');
});
insert_expired($node, 'postgres', 100, 'a');

# Without JIT in this build there is nothing to show.
if ($node->safe_psql('postgres', 'SELECT pg_jit_available()') ne 't')
{
	plan skip_all => 'this PostgreSQL has no JIT provider';
}

# Control: a statement of an ordinary session is compiled and logged so.
my $offset = -s $node->logfile;
$node->safe_psql('postgres', 'SELECT sum(i) FROM generate_series(1, 10) AS i');
$node->wait_for_log(qr/JIT:/, $offset);
ok(1, 'an ordinary session JIT-compiles its statement');

# Two passes after the expired rows are gone, so that the log holds whole
# passes (tokens, policies, rate-limit events and states).
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM regstack.auth_ephemeral_tokens"),
	'the reaper deleted the expired tokens');
my $passes = $node->safe_psql('postgres',
	"SELECT passes FROM regstack.reaper_status() WHERE datid =
	   (SELECT oid FROM pg_database WHERE datname = 'postgres')");
ok( $node->poll_query_until('postgres',
		"SELECT passes >= $passes + 2 FROM regstack.reaper_status() WHERE datid =
		   (SELECT oid FROM pg_database WHERE datname = 'postgres')"),
	'two more passes ran');

# Split the log into entries (continuation lines start with a tab), find
# the reaper workers' process ids by their error context, and collect
# their logged plans.
my @entries = split /\n(?!\t)/, slurp_file($node->logfile);
my %reaper_pid;
for my $entry (@entries)
{
	$reaper_pid{$1} = 1
	  if $entry =~ /^\S+ \S+ \S+ \[(\d+)\].*CONTEXT:.*\n\tregstack reaper /s;
}
my @reaper_plans = grep {
	/^\S+ \S+ \S+ \[(\d+)\].*LOG:  duration: [\d.]+ ms  plan:/
	  && $reaper_pid{$1}
} @entries;

ok(scalar(keys %reaper_pid) >= 2, 'the log holds statements of reaper workers');
ok( (grep { /Query Text: SELECT event_type, max_events, within FROM regstack\.rate_limit_policies/ }
		@reaper_plans),
	'the reaper reads the policies');
ok( (grep { /Query Text: WITH deleted AS \( DELETE FROM regstack\.auth_rate_limit_events/ }
		@reaper_plans),
	'the reaper purges rate-limit events');
is( (scalar grep { /\n\tJIT:/ } @reaper_plans), 0,
	'no statement of the reaper is JIT-compiled');

$node->stop;
done_testing();
