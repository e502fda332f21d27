-- No per-call memory leak: after a warm-up, 20,000 more calls of every
-- token function in one backend leave its memory contexts (what palloc
-- holds, which LeakSanitizer and valgrind cannot see) the same size.
CREATE FUNCTION pg_temp.exercise(calls int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    tok text;
    st text;
BEGIN
    FOR i IN 1 .. calls LOOP
        tok := regstack.issue_token('pre_auth', subject => 'm' || (i % 50), challenge => 'c');
        PERFORM * FROM regstack.peek_token(tok, 'pre_auth', 'c');
        PERFORM * FROM regstack.consume_token(tok, 'pre_auth', 'wrong');
        PERFORM * FROM regstack.consume_token(tok, 'pre_auth', 'c');
        PERFORM * FROM regstack.consume_token('malformed', 'pre_auth');
        SELECT state INTO st FROM regstack.begin_oidc_flow('google', '/home');
        PERFORM regstack.attach_result(st, 'oidc_state', 'jwt');
        PERFORM * FROM regstack.consume_token(st, 'oidc_state');
        PERFORM regstack.pkce_challenge(tok);
        BEGIN
            PERFORM regstack.issue_token('no_such_type');
        EXCEPTION WHEN invalid_parameter_value THEN NULL;
        END;
    END LOOP;
END $$;
CREATE FUNCTION pg_temp.backend_memory() RETURNS bigint LANGUAGE sql AS
    $$ SELECT sum(total_bytes)::bigint FROM pg_backend_memory_contexts $$;

SELECT pg_temp.exercise(2000);
SELECT pg_temp.backend_memory() AS before \gset
SELECT pg_temp.exercise(20000);
SELECT pg_temp.backend_memory() - :before AS growth \gset
-- Allow 64 kB of noise (caches of other code); a leak of even 4 bytes per
-- call would be 80 kB.
SELECT :growth < 65536 AS no_leak;
SELECT count(*) AS tokens_left FROM regstack.auth_ephemeral_tokens;
