#!/usr/bin/env node
// regstack from Node.js with node-postgres (pg): the README's three token
// flows and its two-factor rate-limit example, each result checked.
//
//   npm ci
//   DATABASE_URL=postgresql://app@127.0.0.1:5432/regstack_demo node regstack_example.js
//
// DATABASE_URL is a libpq-style URL.  The role needs only what the README
// grants an application role.  Exits 0 when every answer was right, 1
// (with the reason) on the first wrong one.
//
// What to copy from here:
//  * pool.query() runs each call in its own transaction, committed when it
//    returns (node-postgres has no autocommit switch).  Calls that belong
//    together run on one client from pool.connect() between BEGIN and
//    COMMIT; a consume between BEGIN and ROLLBACK (or a client released
//    with its transaction open) did not happen.
//  * No `name:` in query configs: named prepared statements break behind
//    PgBouncer in transaction mode; unnamed ones (the default) work.
//  * Arguments by name (`subject => $2`), values always as bind parameters.
//  * `SELECT ... FROM regstack.consume_token(...)` for functions that
//    return rows: in the select list they would give one composite string.
//  * Types: bigint arrives as a string, interval as an object
//    ({ hours: 1 }), timestamptz as a Date, jsonb parsed; send jsonb as
//    JSON.stringify(value) (a JS array would be sent as a PostgreSQL array).
'use strict';

const crypto = require('node:crypto');
const { isDeepStrictEqual } = require('node:util');
const pg = require('pg');

function check(condition, what) {
  if (!condition) {
    console.error(`WRONG: ${what}`);
    process.exit(1);
  }
  console.log(`  ok: ${what}`);
}

// An interval object from node-postgres (postgres-interval) in seconds;
// years and months are left out (regstack's intervals have none).
function intervalSeconds(iv) {
  return (iv.days || 0) * 86400 + (iv.hours || 0) * 3600 + (iv.minutes || 0) * 60 +
         (iv.seconds || 0) + (iv.milliseconds || 0) / 1000;
}

async function flow2faLogin(pool) {
  console.log('Flow 1: password, then second factor');
  const cookie = crypto.randomBytes(16).toString('base64url'); // set HttpOnly
  // After the password check: a pre_auth token bound to the cookie value.
  const { rows: [{ token }] } = await pool.query(
    `SELECT regstack.issue_token('pre_auth', subject => $1, challenge => $2) AS token`,
    ['alice', cookie]);
  check(typeof token === 'string' && token.length === 48, 'issue_token returns a 48-character token');

  const consume = `SELECT subject FROM regstack.consume_token($1, 'pre_auth', challenge => $2)`;
  // A stolen token without the cookie gets nothing, and does not burn it.
  let res = await pool.query(consume, [token, 'not-the-cookie']);
  check(res.rowCount === 0, 'a wrong challenge returns no row');
  // The TOTP code was right: redeem the token once.
  res = await pool.query(consume, [token, cookie]);
  check(res.rowCount === 1 && res.rows[0].subject === 'alice', 'consume_token returns the subject');
  res = await pool.query(consume, [token, cookie]);
  check(res.rowCount === 0, 'a replayed consume returns no row');
}

// RFC 7636 S256, as the provider computes it (regstack.pkce_challenge).
function pkceS256(verifier) {
  return crypto.createHash('sha256').update(verifier, 'ascii').digest('base64url');
}

async function flowOidc(pool) {
  console.log('Flow 2: OIDC sign-in with PKCE');
  // /login/google: a set-returning function, so SELECT * FROM it.
  const { rows: [start] } = await pool.query(
    `SELECT * FROM regstack.begin_oidc_flow(provider => $1, redirect_to => $2)`,
    ['google', 'https://app.example/home']);
  check(start.code_challenge_method === 'S256', 'begin_oidc_flow returns state, nonce, S256 challenge');
  const state = start.state; // goes to the provider, with nonce and code_challenge

  // /callback?state=...&code=...: what the token request needs.
  const { rows: [callback] } = await pool.query(
    `SELECT provider, redirect_to, mode, nonce, code_verifier
       FROM regstack.peek_token($1, 'oidc_state')`, [state]);
  check(callback && callback.provider === 'google' && callback.mode === 'signin', 'peek_token finds the state');
  check(pkceS256(callback.code_verifier) === start.code_challenge,
        'the stored verifier matches the challenge sent to the provider');
  check(callback.nonce === start.nonce, 'the stored nonce is the one sent');

  // Code exchanged, ID token checked: park the session on the state.
  let { rows: [{ attached }] } = await pool.query(
    `SELECT regstack.attach_result($1, 'oidc_state', $2) AS attached`, [state, 'session-jwt-for-alice']);
  check(attached === true, 'attach_result returns true (a JS boolean)');

  // The single-page app exchanges the state for the session, once.
  const exchange = `SELECT result, redirect_to FROM regstack.consume_token($1, 'oidc_state')`;
  let res = await pool.query(exchange, [state]);
  check(res.rowCount === 1 && res.rows[0].result === 'session-jwt-for-alice' &&
        res.rows[0].redirect_to === 'https://app.example/home',
        'consume_token returns the session and the redirect');
  res = await pool.query(exchange, [state]);
  check(res.rowCount === 0, 'a second exchange returns no row');
  ({ rows: [{ attached }] } = await pool.query(
    `SELECT regstack.attach_result($1, 'oidc_state', 'late') AS attached`, [state]));
  check(attached === false, 'attach_result on a consumed state returns false');
}

async function flowPasswordReset(pool) {
  console.log('Flow 3: password reset');
  // Start clean, so the example can run twice.  bigint arrives as a string
  // (it can exceed Number.MAX_SAFE_INTEGER): convert it yourself.
  let { rows: [{ n }] } = await pool.query(`SELECT regstack.revoke_tokens('alice', 'password_reset') AS n`);
  check(typeof n === 'string', `revoke_tokens (bigint) arrives as the string '${n}'`);

  // "Forgot password" asked four times: at most 3 live per user, the
  // oldest is dropped.
  const links = [];
  for (let i = 0; i < 4; i++) {
    const { rows: [{ token }] } = await pool.query(
      `SELECT regstack.issue_token('password_reset', subject => $1) AS token`, ['alice']);
    links.push(token);
  }
  const consume = `SELECT subject, created_at, expires_at, expires_at - created_at AS valid_for
                     FROM regstack.consume_token($1, 'password_reset')`;
  let res = await pool.query(consume, [links[0]]);
  check(res.rowCount === 0, 'the oldest of four links was dropped by the cap of 3');

  res = await pool.query(consume, [links[3]]);
  check(res.rowCount === 1 && res.rows[0].subject === 'alice', 'the newest link redeems');
  const row = res.rows[0];
  // timestamptz -> Date (milliseconds); interval -> { hours: 1 }.
  check(row.expires_at instanceof Date && row.expires_at - row.created_at === 3600 * 1000,
        'timestamptz arrives as a Date, one hour apart');
  check(row.valid_for.hours === 1 && intervalSeconds(row.valid_for) === 3600,
        `interval arrives as an object: ${JSON.stringify(row.valid_for)} (toPostgres(): '${row.valid_for.toPostgres()}')`);

  // After the password change every other outstanding link dies too.
  ({ rows: [{ n }] } = await pool.query(
    `SELECT regstack.revoke_tokens(subject => $1, token_type => 'password_reset') AS n`, ['alice']));
  check(Number(n) === 2, 'revoke_tokens revoked the 2 other live links');
  res = await pool.query(consume, [links[1]]);
  check(res.rowCount === 0, 'a revoked link returns no row');
}

async function downloadLink(pool) {
  console.log('Types in: a one-time download link with a jsonb payload and a ttl');
  // jsonb in: JSON.stringify; interval in: a string PostgreSQL parses.
  const payload = { file: 'report.pdf', bytes: 48213, tags: ['q3', 'final'] };
  const { rows: [{ token }] } = await pool.query(
    `SELECT regstack.issue_token('download', ttl => $1, payload => $2) AS token`,
    ['10 minutes', JSON.stringify(payload)]);
  const { rows: [row] } = await pool.query(
    `SELECT payload, expires_at - created_at AS ttl FROM regstack.consume_token($1, 'download')`, [token]);
  // jsonb does not keep key order ({"file", "tags", "bytes"} here): compare
  // values, not JSON strings.
  check(isDeepStrictEqual(row.payload, payload), 'jsonb arrives parsed, as an object');
  check(row.ttl.minutes === 10 && intervalSeconds(row.ttl) === 600, "the ttl given as '10 minutes' was used");
}

async function commitMatters(pool) {
  console.log('Why commit matters: a consume that is not committed did not happen');
  const { rows: [{ token }] } = await pool.query(
    `SELECT regstack.issue_token('pre_auth', subject => 'alice') AS token`);
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const res = await client.query(`SELECT subject FROM regstack.consume_token($1, 'pre_auth')`, [token]);
    check(res.rowCount === 1, 'the consume returned the row ...');
    await client.query('ROLLBACK'); // what an error path (or a missing COMMIT) does
  } finally {
    client.release();
  }
  const res = await pool.query(`SELECT subject FROM regstack.consume_token($1, 'pre_auth')`, [token]);
  check(res.rowCount === 1, '... but was rolled back, and the token redeems again');
}

// One POST of a 2FA code, as the README's example: check, verify, record
// or reset, in one transaction on one client.
async function twoFactorAttempt(pool, user, codeIsRight) {
  const key = `user:${user}`;
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const { rows: [limit] } = await client.query(
      `SELECT allowed, remaining, retry_after, reset_at
         FROM regstack.rate_limit_check($1, '2fa_attempt', record => false)`, [key]);
    if (limit.allowed) {
      if (codeIsRight) { // (verify the TOTP code here)
        await client.query(`SELECT regstack.rate_limit_reset($1, '2fa_attempt')`, [key]);
      } else {
        await client.query(`SELECT regstack.rate_limit_record($1, '2fa_attempt')`, [key]);
      }
    }
    await client.query('COMMIT');
    return limit;
  } catch (err) {
    await client.query('ROLLBACK');
    throw err;
  } finally {
    client.release();
  }
}

async function rateLimit2fa(pool) {
  console.log('Rate limit: failed 2FA codes, 5 per 15 minutes');
  let { rows: [{ n }] } = await pool.query(`SELECT regstack.rate_limit_reset('user:42', '2fa_attempt') AS n`);
  check(typeof n === 'string', 'rate_limit_reset (bigint) arrives as a string (start clean)');

  let limit = await twoFactorAttempt(pool, 42, false);
  check(limit.allowed && intervalSeconds(limit.retry_after) === 0,
        `first attempt allowed, retry_after ${JSON.stringify(limit.retry_after)}`);
  limit = await twoFactorAttempt(pool, 42, true);
  check(limit.allowed, 'right code allowed');
  const { rows: [{ remaining }] } = await pool.query(
    `SELECT remaining FROM regstack.rate_limit_check('user:42', '2fa_attempt', record => false)`);
  check(remaining === 5, 'the right code forgot the failure (5 attempts left; int arrives as a number)');

  for (let i = 0; i < 5; i++) {
    limit = await twoFactorAttempt(pool, 42, false);
    check(limit.allowed, 'wrong code allowed to be tried, failure recorded');
  }
  limit = await twoFactorAttempt(pool, 42, true);
  check(!limit.allowed, 'after 5 failures even the right code is refused');
  const retryAfter = intervalSeconds(limit.retry_after); // whole seconds already
  check(retryAfter >= 1 && retryAfter <= 900, `retry_after is an object: ${JSON.stringify(limit.retry_after)}`);
  check(limit.reset_at instanceof Date && limit.reset_at > new Date(), 'reset_at is a Date in the future');
  console.log(`  -> HTTP 429, Retry-After: ${retryAfter}`);

  ({ rows: [{ n }] } = await pool.query(
    `SELECT regstack.rate_limit_reset(key => 'user:42', event_type => '2fa_attempt') AS n`));
  check(BigInt(n) === 5n, 'rate_limit_reset forgot 5 failures');
}

async function main() {
  const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 });
  try {
    await flow2faLogin(pool);
    await flowOidc(pool);
    await flowPasswordReset(pool);
    await downloadLink(pool);
    await rateLimit2fa(pool);
    await commitMatters(pool);
  } finally {
    await pool.end();
  }
  console.log('all answers right');
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
