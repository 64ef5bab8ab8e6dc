-- imc_sidecar's usage-history tables for PostgreSQL: ours, beside Kamailio's imc
-- tables, which they never touch.  The sidecar creates them itself when missing (and
-- `imc-sidecar db create` does); this script is for operators who prefer to.
--   psql -d kamailio -f sql/postgres/imc-sidecar-history.sql
-- Times are UTC microseconds since the epoch; `id` is the paging cursor.

CREATE TABLE IF NOT EXISTS imc_sidecar_events (
    id BIGSERIAL PRIMARY KEY,
    time_us BIGINT NOT NULL,
    room VARCHAR(255) NOT NULL,
    kind VARCHAR(16) NOT NULL,
    actor VARCHAR(255) NOT NULL,
    subject VARCHAR(255),
    result VARCHAR(128) NOT NULL,
    detail VARCHAR(128)
);
CREATE INDEX IF NOT EXISTS imc_sidecar_events_room_time_idx ON imc_sidecar_events (room, time_us);
CREATE INDEX IF NOT EXISTS imc_sidecar_events_time_idx ON imc_sidecar_events (time_us);

CREATE TABLE IF NOT EXISTS imc_sidecar_messages (
    id BIGSERIAL PRIMARY KEY,
    time_us BIGINT NOT NULL,
    room VARCHAR(255) NOT NULL,
    sender VARCHAR(255) NOT NULL,
    body_size INTEGER NOT NULL,
    content_type VARCHAR(128) NOT NULL,
    recipients INTEGER NOT NULL,
    delivered INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    worst_status INTEGER,
    latency_us BIGINT,
    body TEXT
);
CREATE INDEX IF NOT EXISTS imc_sidecar_messages_room_time_idx ON imc_sidecar_messages (room, time_us);
CREATE INDEX IF NOT EXISTS imc_sidecar_messages_time_idx ON imc_sidecar_messages (time_us);
