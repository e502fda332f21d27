-- regstack install script: the background reaper's status.
-- The reaper itself needs no SQL objects: it runs when the library is
-- preloaded (shared_preload_libraries = 'regstack'), see the README.

CREATE FUNCTION regstack.reaper_status(
    OUT datid             oid,
    OUT pid               integer,
    OUT passes            bigint,
    OUT last_pass_start   timestamptz,
    OUT last_pass_end     timestamptz,
    OUT last_pass_deleted bigint,
    OUT total_deleted     bigint,
    OUT last_error        text,
    OUT last_error_time   timestamptz)
RETURNS SETOF record
LANGUAGE C VOLATILE
AS 'MODULE_PATHNAME', 'regstack_reaper_status';

COMMENT ON FUNCTION regstack.reaper_status() IS
'The reaper''s shared-memory status, one row per database; no rows unless regstack is preloaded (use the regstack.reaper_status view)';

-- The view adds the database name; pg_database is shared, so every
-- database sees the whole cluster's reaper.
CREATE VIEW regstack.reaper_status AS
    SELECT s.datid,
           d.datname,
           s.pid,
           s.passes,
           s.last_pass_start,
           s.last_pass_end,
           s.last_pass_deleted,
           s.total_deleted,
           s.last_error,
           s.last_error_time
      FROM regstack.reaper_status() AS s
      LEFT JOIN pg_catalog.pg_database AS d ON d.oid OPERATOR(pg_catalog.=) s.datid;

COMMENT ON VIEW regstack.reaper_status IS
'Background reaper, per database: worker pid while a pass runs, passes since start, last pass start and end (end NULL while running), rows deleted in the last pass and in total, last error';

COMMENT ON COLUMN regstack.reaper_status.datid IS 'OID of the database';
COMMENT ON COLUMN regstack.reaper_status.datname IS 'Name of the database';
COMMENT ON COLUMN regstack.reaper_status.pid IS 'Process ID of the reaper worker while a pass runs there, else NULL';
COMMENT ON COLUMN regstack.reaper_status.passes IS 'Passes finished since the server started';
COMMENT ON COLUMN regstack.reaper_status.last_pass_start IS 'When the last (or current) pass started';
COMMENT ON COLUMN regstack.reaper_status.last_pass_end IS 'When the last pass ended; NULL while a pass is running';
COMMENT ON COLUMN regstack.reaper_status.last_pass_deleted IS 'Rows (tokens and events) deleted by the last or current pass';
COMMENT ON COLUMN regstack.reaper_status.total_deleted IS 'Rows deleted since the server started';
COMMENT ON COLUMN regstack.reaper_status.last_error IS 'Message of the last error a pass met (kept after later successful passes)';
COMMENT ON COLUMN regstack.reaper_status.last_error_time IS 'When that error happened';
