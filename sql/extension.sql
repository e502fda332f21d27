-- The installed extension: objects, shipped token types, comments,
-- privileges and pg_dump registration.

SELECT extname, extversion, extnamespace::regnamespace AS schema, extrelocatable
  FROM pg_extension WHERE extname = 'regstack';

-- Every object the extension owns in its schema.  From PostgreSQL 17 on,
-- dependent types (a table's row type, an array type) are listed as
-- members too; they go with their base object, and are left out here.
SELECT pg_describe_object(classid, objid, objsubid) AS object
  FROM pg_depend d
 WHERE refclassid = 'pg_extension'::regclass
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'regstack')
   AND deptype = 'e'
   AND NOT EXISTS (SELECT 1 FROM pg_depend i
                    WHERE i.classid = d.classid AND i.objid = d.objid
                      AND i.deptype = 'i')
 ORDER BY 1;

-- The shipped token types and their documented numbers.
SELECT name, default_ttl, max_ttl, required_fields, max_live_per_subject, builtin
  FROM regstack.token_types ORDER BY name;

-- The tables pg_dump keeps (config tables) and with which filter.
SELECT c.relname, x.condition
  FROM pg_extension e,
       unnest(e.extconfig, e.extcondition) AS x(reloid, condition)
       JOIN pg_class c ON c.oid = x.reloid
 WHERE e.extname = 'regstack'
 ORDER BY 1;

-- Nothing is granted to PUBLIC: no table privilege, no EXECUTE.
SELECT c.relname, c.relacl
  FROM pg_class c
 WHERE c.relnamespace = 'regstack'::regnamespace AND c.relkind IN ('r', 'v')
   AND EXISTS (SELECT 1 FROM aclexplode(c.relacl) a WHERE a.grantee = 0);
SELECT p.proname
  FROM pg_proc p
 WHERE p.pronamespace = 'regstack'::regnamespace
   AND (p.proacl IS NULL
        OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0));

-- No function is SECURITY DEFINER: the C code switches to the owner itself.
SELECT count(*) AS security_definer_functions
  FROM pg_proc WHERE pronamespace = 'regstack'::regnamespace AND prosecdef;

-- Every public object has a comment.
SELECT p.oid::regprocedure AS function_without_comment
  FROM pg_proc p
 WHERE p.pronamespace = 'regstack'::regnamespace
   AND obj_description(p.oid, 'pg_proc') IS NULL;
SELECT c.relname AS table_without_comment
  FROM pg_class c
 WHERE c.relnamespace = 'regstack'::regnamespace AND c.relkind IN ('r', 'v')
   AND obj_description(c.oid, 'pg_class') IS NULL;

-- The install script refuses to run outside CREATE EXTENSION.
\set ECHO none
\i sql/regstack--1.1.sql
