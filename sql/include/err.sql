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
    RETURN state || ': ' || message
        || CASE WHEN hint <> '' THEN ' (hint: ' || hint || ')' ELSE '' END;
END $$;
