//! The volatile tier's keys outside rooms in a shared store: the temporary rooms' entries in the
//! public room list and its count, and the rooms each user made (`wit/STORAGE.md`). A temporary
//! room lives in the memory of the instance serving it, but these keys answer questions about
//! all rooms (disco#items, a user's room cap), so every instance must see the others'. Each
//! instance writes its own rows ([`SCHEMA`]), inside its batches; every instance reads the rows
//! of the live instances together; an instance's rows go with it, as its volatile tier does (a
//! dead instance's temporary rooms are gone, and so are their entries). A count is one row per
//! instance, read as their sum, and a batch's change to it is added to this instance's row (see
//! [`super::counts`]).

/// The table, created by the PostgreSQL store's migrations.
pub const SCHEMA: &str = "
CREATE TABLE shared_volatile (
    key BYTEA NOT NULL,
    instance TEXT NOT NULL,
    value BYTEA NOT NULL,
    PRIMARY KEY (key, instance)
);
";

/// The live instances' rows between $1 and $2 (keys as bytes), counts summed ($3: the lease
/// timeout in seconds; live as in [`super::lease`]).
pub const READ: &str = "
SELECT v.key,
       CASE WHEN convert_from(v.key, 'UTF8') LIKE 'meta/%-count'
            THEN convert_to(GREATEST(0, SUM(COALESCE(substring(convert_from(v.value, 'UTF8') from '^-?[0-9]+$')::int8, 0)))::text, 'UTF8')
            ELSE (array_agg(v.value))[1] END
FROM shared_volatile v
WHERE v.key >= $1 AND v.key < $2 AND EXISTS (
    SELECT 1 FROM instances i JOIN pg_stat_activity a ON a.pid = i.backend_pid
    WHERE i.id = v.instance AND i.heartbeat_at > now() - make_interval(secs => $3))
GROUP BY v.key
ORDER BY v.key";

/// Puts this instance's ($2) value of keys $1 (values $3); whoever held such a key before (a
/// room that moved) holds it no more, but for counts, of which each instance has its own.
pub const PUT: &str = "
WITH gone AS (
    DELETE FROM shared_volatile WHERE key = ANY($1::bytea[]) AND instance <> $2
        AND convert_from(key, 'UTF8') NOT LIKE 'meta/%-count')
INSERT INTO shared_volatile (key, instance, value)
    SELECT key, $2, value FROM unnest($1::bytea[], $3::bytea[]) AS w(key, value)
ON CONFLICT (key, instance) DO UPDATE SET value = EXCLUDED.value";

/// Deletes keys $1, whichever instance wrote them.
pub const DELETE: &str = "DELETE FROM shared_volatile WHERE key = ANY($1::bytea[])";

/// Adds differences $3 to this instance's ($2) rows of counts $1.
pub const ADD_TO_COUNTS: &str = "
INSERT INTO shared_volatile AS v (key, instance, value)
    SELECT key, $2, convert_to(difference::text, 'UTF8')
    FROM unnest($1::bytea[], $3::int8[]) AS c(key, difference)
ON CONFLICT (key, instance) DO UPDATE SET value = convert_to((
    COALESCE(substring(convert_from(v.value, 'UTF8') from '^-?[0-9]+$')::int8, 0)
    + convert_from(EXCLUDED.value, 'UTF8')::int8)::text, 'UTF8')";

/// A new process under this instance's name starts with an empty volatile tier: the rows its
/// earlier process wrote ($1: the name) go.
pub const FORGET_EARLIER: &str = "
DELETE FROM shared_volatile v USING instances i WHERE i.id = v.instance AND i.name = $1 AND i.id <> $2";
