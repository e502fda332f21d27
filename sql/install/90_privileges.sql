-- regstack install script, last part: privileges.
-- Nothing is granted to PUBLIC.  The tables are reachable only by their
-- owner; the functions switch to that owner internally, so an application
-- role needs only USAGE on the schema and EXECUTE on the functions.

REVOKE ALL ON ALL TABLES IN SCHEMA regstack FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA regstack FROM PUBLIC;
