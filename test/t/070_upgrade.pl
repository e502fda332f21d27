# Upgrade paths: every released version of regstack installed in this
# PostgreSQL (extension/regstack--X.sql) is created and then brought to the
# default version with ALTER EXTENSION regstack UPDATE; the result must be
# the same, object by object, as a fresh CREATE EXTENSION.  With only one
# version released the test checks that the comparison works and that
# UPDATE is a no-op; the next version ships with this path tested.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'regstack'");
$node->start;

# Every object of the extension, described fully enough that any difference
# in a table, function, index, trigger, view, comment or grant shows.
my $describe = q{
    WITH members AS (
        SELECT classid, objid, objsubid FROM pg_depend
         WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
           AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'regstack'))
    SELECT string_agg(line, E'\n' ORDER BY line) FROM (
        SELECT pg_describe_object(classid, objid, objsubid) AS line FROM members
        UNION ALL
        SELECT 'function ' || p.oid::regprocedure || ': ' || pg_get_functiondef(p.oid)
               || ' acl=' || coalesce(p.proacl::text, 'default')
               || ' comment=' || coalesce(obj_description(p.oid, 'pg_proc'), '')
          FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
        UNION ALL
        SELECT 'column ' || c.oid::regclass || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
               || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
               || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
          FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
          LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
        UNION ALL
        SELECT 'relation ' || c.oid::regclass || ' kind=' || c.relkind::text || ' acl=' || coalesce(c.relacl::text, 'default')
               || ' comment=' || coalesce(obj_description(c.oid, 'pg_class'), '')
               || coalesce(' view=' || pg_get_viewdef(c.oid), '')
          FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
        UNION ALL
        SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
          FROM pg_constraint WHERE connamespace = 'regstack'::regnamespace
        UNION ALL
        SELECT 'index ' || pg_get_indexdef(indexrelid)
          FROM pg_index WHERE indrelid IN (SELECT objid FROM members WHERE classid = 'pg_class'::regclass)
        UNION ALL
        SELECT 'trigger ' || pg_get_triggerdef(t.oid)
          FROM pg_trigger t WHERE NOT t.tgisinternal
           AND t.tgrelid IN (SELECT objid FROM members WHERE classid = 'pg_class'::regclass)
        UNION ALL
        SELECT 'config ' || x.reloid::regclass || ' ' || x.condition
          FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS x(reloid, condition)
         WHERE e.extname = 'regstack'
    ) AS lines
};

my $default_version = $node->safe_psql('postgres',
    q{SELECT default_version FROM pg_available_extensions WHERE name = 'regstack'});
my @versions = split /\n/, $node->safe_psql('postgres',
    q{SELECT version FROM pg_available_extension_versions WHERE name = 'regstack' ORDER BY version});
ok(scalar(@versions) >= 1, "installed versions: @versions; default $default_version");

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION regstack');
my $fresh = $node->safe_psql('fresh', $describe);
like($fresh, qr/function regstack\.consume_token/, 'the description covers the functions');
like($fresh, qr/column regstack\.auth_ephemeral_tokens\.token_hash bytea not null/,
    'and the columns');

# The comparison detects a difference (otherwise it would prove nothing).
$node->safe_psql('fresh', q{COMMENT ON FUNCTION regstack.pkce_challenge(text) IS 'changed'});
isnt($node->safe_psql('fresh', $describe), $fresh, 'a changed comment is a difference');
$node->safe_psql('fresh', 'DROP EXTENSION regstack; CREATE EXTENSION regstack');

foreach my $version (@versions)
{
    my $db = "from_$version";
    $db =~ s/\W/_/g;
    $node->safe_psql('postgres', qq{CREATE DATABASE "$db"});
    $node->safe_psql($db, qq{CREATE EXTENSION regstack VERSION '$version'});
    my ($ret, $stdout, $stderr) = $node->psql($db, 'ALTER EXTENSION regstack UPDATE');
    is($ret, 0, "ALTER EXTENSION regstack UPDATE from $version succeeds");
    is($node->safe_psql($db, q{SELECT extversion FROM pg_extension WHERE extname = 'regstack'}),
        $default_version, "$version is updated to $default_version");
    is($node->safe_psql($db, $describe), $fresh,
        "updated from $version, the extension is the same as a fresh install");
    is($node->safe_psql($db,
            q{SELECT subject FROM regstack.consume_token(regstack.issue_token('pre_auth', subject => 'u'), 'pre_auth')}),
        'u', "and works (from $version)");
}

$node->stop;
done_testing();
