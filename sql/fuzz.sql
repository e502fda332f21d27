-- Randomised bad-input corpus: 8,000 calls of the regstack functions (tokens
-- and rate limits) with
-- arguments drawn from a corpus of NULLs, empty, huge, malformed, multibyte
-- and valid values.  Every call ends in a result or a documented error;
-- never an internal error (class XX), never a crash.  The seed makes the
-- draw repeatable.
SELECT setseed(0.4711);
SELECT regstack.issue_token('pre_auth', subject => 'fuzz', challenge => 'c') AS live_token \gset

CREATE TEMP TABLE corpus_text (v text);
INSERT INTO corpus_text VALUES
    (NULL), (''), ('x'), ('pre_auth'), ('oidc_state'), ('password_reset'), ('download'),
    ('signin'), ('link'), (:'live_token'), (repeat('A', 48)), (repeat('=', 48)),
    (repeat('a', 47)), (repeat('Z', 128)), (repeat('Z', 129)), (repeat('b', 512)),
    (repeat('b', 513)), (repeat('c', 4096)), (repeat('c', 4097)), (repeat('d', 16385)),
    (repeat('e', 1048576)), (repeat('é', 3000)), (E'\u00e9\u4e2d\U0001F600'),
    (E'tab\tnew\nline'), ('''; DROP TABLE x; --'), ('%s%n%x'), (repeat(' ', 48)),
    ('dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk'), ('2fa_attempt'), ('login_ip'),
    (repeat('k', 1024)), (repeat('k', 1025));
CREATE TEMP TABLE corpus_interval (v interval);
INSERT INTO corpus_interval VALUES
    (NULL), ('0'), ('-1 second'), ('1 microsecond'), ('1 second'), ('5 minutes'),
    ('15 minutes'), ('24 hours'), ('7 days'), ('1 mon -30 days'), ('1000 years'),
    ('178000000 years'), ('-178000000 years'), ('2147483647 days'), ('-2147483648 months');
CREATE TEMP TABLE corpus_jsonb (v jsonb);
INSERT INTO corpus_jsonb VALUES
    (NULL), ('null'), ('{}'), ('[]'), ('"x"'), ('{"a": [1, 2, {"b": null}]}'),
    ((repeat('[', 2000) || repeat(']', 2000))::jsonb),
    (jsonb_build_object('big', repeat('p', 16000))),
    (jsonb_build_object('big', repeat('p', 20000)));

CREATE TEMP TABLE corpus_int (v int);
INSERT INTO corpus_int VALUES
    (NULL), (0), (-1), (1), (2), (10), (1000000), (2147483647), (-2147483648);
CREATE FUNCTION pg_temp.n() RETURNS int LANGUAGE sql AS
    $$ SELECT v FROM corpus_int OFFSET floor(random() * (SELECT count(*) FROM corpus_int)) LIMIT 1 $$;
CREATE FUNCTION pg_temp.t() RETURNS text LANGUAGE sql AS
    $$ SELECT v FROM corpus_text OFFSET floor(random() * (SELECT count(*) FROM corpus_text)) LIMIT 1 $$;
CREATE FUNCTION pg_temp.i() RETURNS interval LANGUAGE sql AS
    $$ SELECT v FROM corpus_interval OFFSET floor(random() * (SELECT count(*) FROM corpus_interval)) LIMIT 1 $$;
CREATE FUNCTION pg_temp.j() RETURNS jsonb LANGUAGE sql AS
    $$ SELECT v FROM corpus_jsonb OFFSET floor(random() * (SELECT count(*) FROM corpus_jsonb)) LIMIT 1 $$;

CREATE TEMP TABLE outcomes (fn text, sqlstate text);
DO $$
DECLARE
    calls constant text[] := ARRAY[
        'SELECT regstack.issue_token($1, $2, $13, $3, $4, $5, $6, $7, $8, $9, $10, $14)',
        'SELECT regstack.issue_token($1, subject => $2, ttl => $13)',
        'SELECT regstack.issue_token($1, subject => $2, challenge => $3, payload => $14)',
        'SELECT * FROM regstack.consume_token($1, $2, $3)',
        'SELECT * FROM regstack.peek_token($1, $2, $3)',
        'SELECT regstack.attach_result($1, $2, $3)',
        'SELECT regstack.revoke_tokens($1, $2)',
        'SELECT regstack.pkce_challenge($1)',
        'SELECT * FROM regstack.begin_oidc_flow($1, $2, $3, $4, $13)',
        'SELECT * FROM regstack.rate_limit_check($1, $2, $15, $13, $16)',
        'SELECT * FROM regstack.rate_limit_check($1, $2)',
        'SELECT regstack.rate_limit_record($1, $2)',
        'SELECT regstack.rate_limit_reset($1, $2)'];
    call text;
BEGIN
    FOR n IN 1 .. 8000 LOOP
        call := calls[1 + floor(random() * array_length(calls, 1))::int];
        BEGIN
            EXECUTE call USING pg_temp.t(), pg_temp.t(), pg_temp.t(), pg_temp.t(),
                pg_temp.t(), pg_temp.t(), pg_temp.t(), pg_temp.t(), pg_temp.t(),
                pg_temp.t(), pg_temp.t(), pg_temp.t(), pg_temp.i(), pg_temp.j(),
                pg_temp.n(), (random() < 0.5);
            INSERT INTO outcomes VALUES (call, 'ok');
        EXCEPTION WHEN OTHERS THEN
            INSERT INTO outcomes VALUES (call, SQLSTATE);
        END;
    END LOOP;
END $$;

-- No internal error of any kind.
SELECT count(*) AS internal_errors FROM outcomes WHERE sqlstate LIKE 'XX%';
-- Only documented SQLSTATEs: 22004 (NULL), 22023 (invalid), 22001 (too
-- long), 54000 (payload too large), and successes.
SELECT DISTINCT sqlstate FROM outcomes ORDER BY 1;
-- Every function was both called successfully and refused.
SELECT fn, bool_or(sqlstate = 'ok') AS some_ok, bool_or(sqlstate <> 'ok') AS some_refused
  FROM outcomes GROUP BY fn ORDER BY fn;
TRUNCATE regstack.auth_ephemeral_tokens, regstack.auth_rate_limit_events,
         regstack.auth_rate_limit_state;
