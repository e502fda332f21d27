# docs/postgres_exporter.yaml, the postgres_exporter queries file: it is
# valid YAML in the queries.yaml format (each namespace has a query and
# metrics, each metric a usage of LABEL, COUNTER or GAUGE), and each query
# runs as a role whose only privilege is membership of pg_monitor, returns
# rows, exactly the columns its metrics name, in that order, and one row
# per set of labels.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use IPC::Run;
use FindBin;
use lib $FindBin::Bin;
use RegstackTAP;

my $file = "$FindBin::Bin/../../docs/postgres_exporter.yaml";
my $json = '';
my $ran = IPC::Run::run(
	[ 'python3', '-c',
	  'import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)',
	  $file ],
	'>', \$json, '2>', \my $stderr);
ok($ran, 'the queries file is valid YAML') or diag($stderr);
my $namespaces = decode_json($json);

my $node = PostgreSQL::Test::Cluster->new('stats_exporter');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'regstack'
regstack.reaper_naptime = 1
});
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION regstack;
	CREATE ROLE exporter LOGIN IN ROLE pg_monitor;
	SELECT regstack.issue_token('pre_auth', subject => 'a');
	SELECT count(*) FROM regstack.consume_token(repeat('A', 48), 'pre_auth');
	SELECT allowed FROM regstack.rate_limit_check('k', '2fa_attempt');
});
insert_expired($node, 'postgres', 100, 'a');
ok($node->poll_query_until('postgres',
		"SELECT recent_passes >= 1 FROM regstack.reaper_lag WHERE datname = 'postgres'"),
	'a reaper pass has deleted rows');

foreach my $namespace (sort keys %$namespaces)
{
	my $spec = $namespaces->{$namespace};
	ok(defined $spec->{query} && ref $spec->{metrics} eq 'ARRAY',
		"$namespace has a query and metrics");
	my (@names, @labels);
	foreach my $metric (@{ $spec->{metrics} })
	{
		my ($name) = keys %$metric;
		my $usage = $metric->{$name}{usage} // '';
		push @names, $name;
		push @labels, $name if $usage eq 'LABEL';
		like($usage, qr/^(LABEL|COUNTER|GAUGE)$/, "$namespace: $name is a $usage");
		ok(($metric->{$name}{description} // '') ne '', "$namespace: $name has a description");
	}
	(my $query = $spec->{query}) =~ s/;?\s*$//;

	my ($ret, $columns, $err) = $node->psql('postgres', "$query \\gdesc",
		extra_params => [ '-U', 'exporter' ]);
	is($ret, 0, "$namespace: the query runs as a pg_monitor member") or diag($err);
	is(join(',', map { (split /\|/)[0] } split /\n/, $columns), join(',', @names),
		"$namespace: it returns the metrics' columns, in order");
	my $label_list = join(', ', map { "q.$_" } @labels);
	is($node->safe_psql('postgres', qq{
		SELECT count(*) > 0 AND count(*) = count(DISTINCT ($label_list))
		  FROM ($query) AS q}, extra_params => [ '-U', 'exporter' ]),
		't', "$namespace: it returns rows, one per set of labels");
}
ok(exists $namespaces->{$_}, "$_ is exported")
  foreach qw(regstack_tokens regstack_rate_limits regstack_reaper);

$node->stop;
done_testing();
