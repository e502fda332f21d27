// regstack from Java with JDBC (the PostgreSQL JDBC driver, pgjdbc): the
// README's three token flows and its two-factor rate-limit example, each
// result checked.
//
//   javac -cp /usr/share/java/postgresql.jar -d classes RegstackExample.java
//   DATABASE_URL=postgresql://app@127.0.0.1:5432/regstack_demo \
//     java -cp classes:/usr/share/java/postgresql.jar RegstackExample
//
// DATABASE_URL is a libpq-style URL (postgresql://user:password@host:port/db),
// turned into a JDBC URL below; a jdbc:postgresql: URL is taken as it is.
// The role needs only what the README grants an application role.  Exits 0
// when every answer was right, 1 (with the reason) on the first wrong one.
//
// What to copy from here:
//  * JDBC's default is autocommit on: each call commits when it returns.
//    Pools and frameworks often turn it off (HikariCP autoCommit=false,
//    Spring @Transactional): then a consume is kept only by commit(), and
//    a rollback (or a pool rolling back a returned connection) undoes it.
//    Calls that belong together: setAutoCommit(false) ... commit().
//  * prepareThreshold=0: the driver never switches to named server-side
//    prepared statements, so the same code works through PgBouncer in
//    transaction mode.
//  * Arguments by name (`subject => ?`), values always as bind parameters.
//  * `SELECT ... FROM regstack.consume_token(...)` for functions that
//    return rows: in the select list they would give one composite string.
//  * Types: bigint -> getLong; interval -> org.postgresql.util.PGInterval;
//    timestamptz -> getObject(col, OffsetDateTime.class); jsonb in needs
//    `?::jsonb` (or setObject(i, json, Types.OTHER)): setString alone
//    fails with a misleading 42883 "function ... does not exist".

import java.net.URI;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Types;
import java.time.Duration;
import java.time.OffsetDateTime;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Optional;
import java.util.Properties;

import org.postgresql.util.PGInterval;

public final class RegstackExample {

    static void check(boolean condition, String what) {
        if (!condition) {
            System.err.println("WRONG: " + what);
            System.exit(1);
        }
        System.out.println("  ok: " + what);
    }

    // --- connecting -------------------------------------------------------

    static Connection connect() throws Exception {
        Properties props = new Properties();
        String url = jdbcUrl(System.getenv("DATABASE_URL"), props);
        props.setProperty("prepareThreshold", "0"); // no named statements (PgBouncer)
        return DriverManager.getConnection(url, props); // autocommit on
    }

    // postgresql://user:password@host:port/db?sslmode=... -> a JDBC URL, with
    // user and password moved into props (JDBC URLs have no user@ part).
    static String jdbcUrl(String databaseUrl, Properties props) {
        if (databaseUrl == null) {
            throw new IllegalArgumentException("set DATABASE_URL, e.g. postgresql://app@127.0.0.1:5432/regstack_demo");
        }
        if (databaseUrl.startsWith("jdbc:")) {
            return databaseUrl;
        }
        URI uri = URI.create(databaseUrl);
        String userInfo = uri.getRawUserInfo();
        if (userInfo != null) {
            String[] parts = userInfo.split(":", 2);
            props.setProperty("user", URLDecoder.decode(parts[0], StandardCharsets.UTF_8));
            if (parts.length == 2) {
                props.setProperty("password", URLDecoder.decode(parts[1], StandardCharsets.UTF_8));
            }
        }
        String host = uri.getHost() != null ? uri.getHost() : "localhost";
        String port = uri.getPort() != -1 ? ":" + uri.getPort() : "";
        String query = uri.getRawQuery() != null ? "?" + uri.getRawQuery() : "";
        return "jdbc:postgresql://" + host + port + uri.getRawPath() + query;
    }

    // --- small JDBC helpers -------------------------------------------------

    interface RowReader<T> {
        T read(ResultSet rs) throws SQLException;
    }

    // Runs a query with its arguments bound in order; returns every row.
    static <T> List<T> query(Connection conn, String sql, RowReader<T> reader, Object... args)
            throws SQLException {
        try (PreparedStatement ps = conn.prepareStatement(sql)) {
            for (int i = 0; i < args.length; i++) {
                ps.setObject(i + 1, args[i]); // a String binds as varchar
            }
            List<T> rows = new ArrayList<>();
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    rows.add(reader.read(rs));
                }
            }
            return rows;
        }
    }

    // The only row, or empty when there is none (a consume that found nothing).
    static <T> Optional<T> queryOne(Connection conn, String sql, RowReader<T> reader, Object... args)
            throws SQLException {
        List<T> rows = query(conn, sql, reader, args);
        if (rows.size() > 1) {
            throw new IllegalStateException("more than one row from " + sql);
        }
        return rows.stream().findFirst();
    }

    // A regstack interval (days, hours, minutes, seconds; never months) as a Duration.
    static Duration toDuration(PGInterval iv) {
        return Duration.ofDays(iv.getDays()).plusHours(iv.getHours()).plusMinutes(iv.getMinutes())
                .plusSeconds(iv.getWholeSeconds()).plusNanos(iv.getMicroSeconds() * 1000L);
    }

    // --- Flow 1: password, then second factor -------------------------------

    static void flow2faLogin(Connection conn) throws Exception {
        System.out.println("Flow 1: password, then second factor");
        byte[] random = new byte[16];
        new SecureRandom().nextBytes(random);
        String cookie = Base64.getUrlEncoder().withoutPadding().encodeToString(random); // set HttpOnly
        // After the password check: a pre_auth token bound to the cookie value.
        String token = queryOne(conn,
                "SELECT regstack.issue_token('pre_auth', subject => ?, challenge => ?) AS token",
                rs -> rs.getString("token"), "alice", cookie).orElseThrow();
        check(token.length() == 48, "issue_token returns a 48-character token");

        String consume = "SELECT subject FROM regstack.consume_token(?, 'pre_auth', challenge => ?)";
        // A stolen token without the cookie gets nothing, and does not burn it.
        Optional<String> subject = queryOne(conn, consume, rs -> rs.getString("subject"), token, "not-the-cookie");
        check(subject.isEmpty(), "a wrong challenge returns no row");
        // The TOTP code was right: redeem the token once.
        subject = queryOne(conn, consume, rs -> rs.getString("subject"), token, cookie);
        check(subject.equals(Optional.of("alice")), "consume_token returns the subject");
        subject = queryOne(conn, consume, rs -> rs.getString("subject"), token, cookie);
        check(subject.isEmpty(), "a replayed consume returns no row");
    }

    // --- Flow 2: OIDC sign-in with PKCE -------------------------------------

    record OidcStart(String state, String nonce, String codeChallenge, String method) {}

    record OidcState(String provider, String redirectTo, String mode, String nonce, String codeVerifier) {}

    // RFC 7636 S256, as the provider computes it (regstack.pkce_challenge).
    static String pkceS256(String verifier) throws Exception {
        byte[] digest = MessageDigest.getInstance("SHA-256").digest(verifier.getBytes(StandardCharsets.US_ASCII));
        return Base64.getUrlEncoder().withoutPadding().encodeToString(digest);
    }

    static void flowOidc(Connection conn) throws Exception {
        System.out.println("Flow 2: OIDC sign-in with PKCE");
        // /login/google: a set-returning function, so SELECT * FROM it.
        OidcStart start = queryOne(conn,
                "SELECT * FROM regstack.begin_oidc_flow(provider => ?, redirect_to => ?)",
                rs -> new OidcStart(rs.getString("state"), rs.getString("nonce"),
                        rs.getString("code_challenge"), rs.getString("code_challenge_method")),
                "google", "https://app.example/home").orElseThrow();
        check(start.method().equals("S256"), "begin_oidc_flow returns state, nonce, S256 challenge");

        // /callback?state=...&code=...: what the token request needs.
        Optional<OidcState> callback = queryOne(conn,
                "SELECT provider, redirect_to, mode, nonce, code_verifier FROM regstack.peek_token(?, 'oidc_state')",
                rs -> new OidcState(rs.getString("provider"), rs.getString("redirect_to"), rs.getString("mode"),
                        rs.getString("nonce"), rs.getString("code_verifier")),
                start.state());
        check(callback.isPresent() && callback.get().provider().equals("google")
                && callback.get().mode().equals("signin"), "peek_token finds the state");
        check(pkceS256(callback.get().codeVerifier()).equals(start.codeChallenge()),
                "the stored verifier matches the challenge sent to the provider");
        check(callback.get().nonce().equals(start.nonce()), "the stored nonce is the one sent");

        // Code exchanged, ID token checked: park the session on the state.
        boolean attached = queryOne(conn, "SELECT regstack.attach_result(?, 'oidc_state', ?) AS attached",
                rs -> rs.getBoolean("attached"), start.state(), "session-jwt-for-alice").orElseThrow();
        check(attached, "attach_result returns true");

        // The single-page app exchanges the state for the session, once.
        String exchange = "SELECT result, redirect_to FROM regstack.consume_token(?, 'oidc_state')";
        Optional<String> result = queryOne(conn, exchange,
                rs -> rs.getString("result") + " -> " + rs.getString("redirect_to"), start.state());
        check(result.equals(Optional.of("session-jwt-for-alice -> https://app.example/home")),
                "consume_token returns the session and the redirect");
        check(queryOne(conn, exchange, rs -> rs.getString("result"), start.state()).isEmpty(),
                "a second exchange returns no row");
        attached = queryOne(conn, "SELECT regstack.attach_result(?, 'oidc_state', 'late') AS attached",
                rs -> rs.getBoolean("attached"), start.state()).orElseThrow();
        check(!attached, "attach_result on a consumed state returns false");
    }

    // --- Flow 3: password reset ---------------------------------------------

    record Redeemed(String subject, OffsetDateTime createdAt, OffsetDateTime expiresAt, PGInterval validFor) {}

    static void flowPasswordReset(Connection conn) throws Exception {
        System.out.println("Flow 3: password reset");
        // Start clean, so the example can run twice.  bigint -> long.
        long revoked = queryOne(conn, "SELECT regstack.revoke_tokens('alice', 'password_reset') AS n",
                rs -> rs.getLong("n")).orElseThrow();
        check(revoked >= 0, "revoke_tokens returns a bigint (getLong)");

        // "Forgot password" asked four times: at most 3 live per user, the
        // oldest is dropped.
        List<String> links = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            links.add(queryOne(conn, "SELECT regstack.issue_token('password_reset', subject => ?) AS token",
                    rs -> rs.getString("token"), "alice").orElseThrow());
        }
        String consume = "SELECT subject, created_at, expires_at, expires_at - created_at AS valid_for"
                + " FROM regstack.consume_token(?, 'password_reset')";
        RowReader<Redeemed> redeemed = rs -> new Redeemed(rs.getString("subject"),
                rs.getObject("created_at", OffsetDateTime.class),
                rs.getObject("expires_at", OffsetDateTime.class),
                (PGInterval) rs.getObject("valid_for"));
        check(queryOne(conn, consume, redeemed, links.get(0)).isEmpty(),
                "the oldest of four links was dropped by the cap of 3");

        Optional<Redeemed> row = queryOne(conn, consume, redeemed, links.get(3));
        check(row.isPresent() && row.get().subject().equals("alice"), "the newest link redeems");
        check(Duration.between(row.get().createdAt(), row.get().expiresAt()).equals(Duration.ofHours(1)),
                "timestamptz arrives as OffsetDateTime: " + row.get().expiresAt());
        check(toDuration(row.get().validFor()).equals(Duration.ofHours(1)),
                "interval arrives as PGInterval: " + row.get().validFor().getValue());

        // After the password change every other outstanding link dies too.
        revoked = queryOne(conn, "SELECT regstack.revoke_tokens(subject => ?, token_type => 'password_reset') AS n",
                rs -> rs.getLong("n"), "alice").orElseThrow();
        check(revoked == 2, "revoke_tokens revoked the 2 other live links");
        check(queryOne(conn, consume, redeemed, links.get(1)).isEmpty(), "a revoked link returns no row");
    }

    // --- Types in: jsonb and interval parameters -----------------------------

    static void downloadLink(Connection conn) throws Exception {
        System.out.println("Types in: a one-time download link with a jsonb payload and a ttl");
        String json = "{\"file\": \"report.pdf\", \"bytes\": 48213}";

        // The trap: setString binds varchar, there is no implicit cast from
        // varchar to jsonb, so no function matches and the error is 42883.
        try (PreparedStatement ps = conn.prepareStatement(
                "SELECT regstack.issue_token('download', payload => ?)")) {
            ps.setString(1, json);
            ps.executeQuery();
            check(false, "setString on a jsonb argument fails");
        } catch (SQLException e) {
            check("42883".equals(e.getSQLState()), "setString on a jsonb argument fails with 42883 (function does not exist)");
        }

        // Right: cast the parameter (or setObject(2, json, Types.OTHER));
        // an interval as a PGInterval.
        String token;
        try (PreparedStatement ps = conn.prepareStatement(
                "SELECT regstack.issue_token('download', ttl => ?, payload => ?::jsonb)")) {
            ps.setObject(1, new PGInterval(0, 0, 0, 0, 10, 0)); // 10 minutes
            ps.setString(2, json);
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                token = rs.getString(1);
            }
        }
        // A second way, with no cast in the SQL: Types.OTHER leaves the type
        // to the server.
        String other;
        try (PreparedStatement ps = conn.prepareStatement(
                "SELECT regstack.issue_token('download', payload => ?)")) {
            ps.setObject(1, json, Types.OTHER);
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                other = rs.getString(1);
            }
        }
        check(other.length() == 48, "setObject(json, Types.OTHER) on a jsonb argument works");

        // jsonb out: getString gives the JSON text (jsonb's own formatting and
        // key order); parse it with your JSON library, or pick fields in SQL.
        record Download(String payload, String file, long bytes, PGInterval ttl) {}
        Download d = queryOne(conn,
                "SELECT payload, payload->>'file' AS file, (payload->>'bytes')::bigint AS bytes,"
                        + " expires_at - created_at AS ttl FROM regstack.consume_token(?, 'download')",
                rs -> new Download(rs.getString("payload"), rs.getString("file"), rs.getLong("bytes"),
                        (PGInterval) rs.getObject("ttl")), token).orElseThrow();
        check(d.file().equals("report.pdf") && d.bytes() == 48213, "jsonb arrives as text: " + d.payload());
        check(toDuration(d.ttl()).equals(Duration.ofMinutes(10)), "the ttl given as a PGInterval was used");
        check(queryOne(conn, "SELECT 1 FROM regstack.consume_token(?, 'download')", rs -> 1, other).isPresent(),
                "the Types.OTHER token redeems");
    }

    // --- Why commit matters -------------------------------------------------

    static void commitMatters(Connection conn) throws Exception {
        System.out.println("Why commit matters: a consume that is not committed did not happen");
        String token = queryOne(conn, "SELECT regstack.issue_token('pre_auth', subject => 'alice')",
                rs -> rs.getString(1)).orElseThrow();
        conn.setAutoCommit(false); // as many pools and frameworks configure it
        try {
            check(queryOne(conn, "SELECT subject FROM regstack.consume_token(?, 'pre_auth')",
                    rs -> rs.getString(1), token).isPresent(), "the consume returned the row ...");
            conn.rollback(); // what an error path, or a pool given back an uncommitted connection, does
        } finally {
            conn.setAutoCommit(true);
        }
        check(queryOne(conn, "SELECT subject FROM regstack.consume_token(?, 'pre_auth')",
                rs -> rs.getString(1), token).isPresent(), "... but was rolled back, and the token redeems again");
    }

    // --- Rate limit: the README's 2FA example -------------------------------

    record Limit(boolean allowed, int remaining, PGInterval retryAfter, OffsetDateTime resetAt) {}

    // One POST of a 2FA code: check, verify, record or reset, in one transaction.
    static Limit twoFactorAttempt(Connection conn, int user, boolean codeIsRight) throws Exception {
        String key = "user:" + user;
        conn.setAutoCommit(false);
        try {
            Limit limit = queryOne(conn,
                    "SELECT allowed, remaining, retry_after, reset_at"
                            + " FROM regstack.rate_limit_check(?, '2fa_attempt', record => false)",
                    rs -> new Limit(rs.getBoolean("allowed"), rs.getInt("remaining"),
                            (PGInterval) rs.getObject("retry_after"),
                            rs.getObject("reset_at", OffsetDateTime.class)),
                    key).orElseThrow();
            if (limit.allowed()) {
                String call = codeIsRight // (verify the TOTP code here)
                        ? "SELECT regstack.rate_limit_reset(?, '2fa_attempt')"
                        : "SELECT regstack.rate_limit_record(?, '2fa_attempt')"; // returns void
                try (PreparedStatement ps = conn.prepareStatement(call)) {
                    ps.setString(1, key);
                    ps.execute();
                }
            }
            conn.commit();
            return limit;
        } catch (Exception e) {
            conn.rollback();
            throw e;
        } finally {
            conn.setAutoCommit(true);
        }
    }

    static void rateLimit2fa(Connection conn) throws Exception {
        System.out.println("Rate limit: failed 2FA codes, 5 per 15 minutes");
        long forgotten = queryOne(conn, "SELECT regstack.rate_limit_reset('user:42', '2fa_attempt') AS n",
                rs -> rs.getLong("n")).orElseThrow();
        check(forgotten >= 0, "rate_limit_reset returns a bigint (start clean)");

        Limit limit = twoFactorAttempt(conn, 42, false);
        check(limit.allowed() && toDuration(limit.retryAfter()).isZero(),
                "first attempt allowed, retry_after " + limit.retryAfter().getValue());
        limit = twoFactorAttempt(conn, 42, true);
        check(limit.allowed(), "right code allowed");
        int remaining = queryOne(conn,
                "SELECT remaining FROM regstack.rate_limit_check('user:42', '2fa_attempt', record => false)",
                rs -> rs.getInt("remaining")).orElseThrow();
        check(remaining == 5, "the right code forgot the failure (5 attempts left)");

        for (int i = 0; i < 5; i++) {
            check(twoFactorAttempt(conn, 42, false).allowed(), "wrong code allowed to be tried, failure recorded");
        }
        limit = twoFactorAttempt(conn, 42, true);
        check(!limit.allowed(), "after 5 failures even the right code is refused");
        Duration retryAfter = toDuration(limit.retryAfter());
        check(retryAfter.compareTo(Duration.ofSeconds(1)) >= 0 && retryAfter.compareTo(Duration.ofMinutes(15)) <= 0,
                "retry_after is a PGInterval: " + limit.retryAfter().getValue());
        check(limit.resetAt().isAfter(OffsetDateTime.now()), "reset_at is an OffsetDateTime in the future");
        System.out.println("  -> HTTP 429, Retry-After: " + retryAfter.getSeconds());

        forgotten = queryOne(conn,
                "SELECT regstack.rate_limit_reset(key => 'user:42', event_type => '2fa_attempt') AS n",
                rs -> rs.getLong("n")).orElseThrow();
        check(forgotten == 5, "rate_limit_reset forgot 5 failures");
    }

    public static void main(String[] args) throws Exception {
        try (Connection conn = connect()) {
            flow2faLogin(conn);
            flowOidc(conn);
            flowPasswordReset(conn);
            downloadLink(conn);
            rateLimit2fa(conn);
            commitMatters(conn);
        }
        System.out.println("all answers right");
    }
}
