-- Test helper, included by regression tests: pg_temp.err(statement) runs a
-- statement and returns 'no error' or "SQLSTATE: message (hint: ...)", so
-- expected output shows the precise SQLSTATE of every error.
CREATE FUNCTION pg_temp.err(statement text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    state text; message text; hint text;
BEGIN
    EXECUTE statement;
    RETURN 'no error';
EXCEPTION WHEN others THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
                            hint = PG_EXCEPTION_HINT;
    -- Qualified operators: search_path.sql runs this under a hostile path.
    RETURN state OPERATOR(pg_catalog.||) ': ' OPERATOR(pg_catalog.||) message
        OPERATOR(pg_catalog.||)
        CASE WHEN hint OPERATOR(pg_catalog.<>) '' THEN
            ' (hint: ' OPERATOR(pg_catalog.||) hint OPERATOR(pg_catalog.||) ')'
        ELSE '' END;
END $$;
