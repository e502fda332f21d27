# A bounded sqlsmith run (random SQL from the catalog) against a database
# with regstack installed and data in its tables: the server must not crash
# and no internal error (SQLSTATE class XX) may be raised by regstack's own
# code.  Errors are logged verbosely, so each carries the source location
# that raised it: random SQL trips internal errors in PostgreSQL itself too
# (e.g. intervaltypmodout on a bad typmod), which are not ours.
# REGSTACK_SQLSMITH_QUERIES sets the number of queries (default 3000, a
# smoke run for CI); for a long run by hand, e.g.
#   REGSTACK_SQLSMITH_QUERIES=200000 SUITES=tap bash test/check.sh
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $queries = $ENV{REGSTACK_SQLSMITH_QUERIES} // 3000;
# test/check.sh installs sqlsmith; a missing one is a failure, not a skip.
my ($sqlsmith) = grep { -x $_ } map { "$_/sqlsmith" } split /:/, $ENV{PATH};
BAIL_OUT('sqlsmith is not installed (Debian package sqlsmith)') unless $sqlsmith;

my $node = PostgreSQL::Test::Cluster->new('sqlsmith');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'regstack'
log_line_prefix = '%m [%p] %e '
log_error_verbosity = verbose
log_statement = none
log_min_error_statement = error
track_functions = all
statement_timeout = 2s
});
$node->start;
$node->safe_psql('postgres', q{
    CREATE EXTENSION regstack;
    SELECT regstack.issue_token('pre_auth', subject => 'u' || i, challenge => 'c')
      FROM generate_series(1, 50) AS i;
    SELECT * FROM regstack.begin_oidc_flow('google', '/home');
});

my ($stdout, $stderr) = ('', '');
my $target = $node->connstr('postgres');
my $ran = IPC::Run::run(
    [ $sqlsmith, "--target=$target", '--seed=4711', "--max-queries=$queries",
      '--exclude-catalog' ],
    '>', \$stdout, '2>', \$stderr,
    IPC::Run::timeout(600));
note("sqlsmith: " . substr($stderr, -400));

is($node->safe_psql('postgres', 'SELECT 1'), '1', "the server is up after $queries sqlsmith queries");
my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal|PANIC:|was terminated by exception/,
    'no backend crashed');

# An internal error raised in one of regstack's source files: its ERROR
# line, then (verbose) its LOCATION line naming one of our files.
my $our_files = join('|', map { quotemeta } map { m{([^/]+\.c)$} } glob('src/*.c'));
ok(length($our_files) > 0, 'regstack source files found');
my $prefix = qr/\S+ \S+ \S+ \[\d+\] XX\d\d\d/;
my $ours = qr/^$prefix ERROR: .*\n(?:$prefix (?!ERROR).*\n)*?$prefix LOCATION: .*\b(?:$our_files):\d+.*$/m;
my $sample = "2026-11-23 10:00:00.000 UTC [7] XX000 ERROR:  XX000: boom\n"
  . "2026-11-23 10:00:00.000 UTC [7] XX000 LOCATION:  tokens_find, tokens.c:10\n";
ok($sample =~ $ours, 'control: the pattern finds an internal error located in our code');
my @internal = ($log =~ /$ours/g);
is(scalar(@internal), 0, 'no internal error raised by regstack code')
  or diag(join("\n", @internal[0 .. ($#internal < 4 ? $#internal : 4)]));
my $core_internal = () = $log =~ /^\S+ \S+ \S+ \[\d+\] XX\d\d\d ERROR:/mg;
note("internal errors raised inside PostgreSQL itself: $core_internal");

my $calls = $node->safe_psql('postgres',
    q{SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions WHERE schemaname = 'regstack'});
cmp_ok($calls, '>', 0, "sqlsmith reached regstack's functions ($calls calls)");

$node->stop;
done_testing();
