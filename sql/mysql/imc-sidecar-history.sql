-- imc_sidecar's usage-history tables for MySQL/MariaDB: ours, beside Kamailio's imc
-- tables, which they never touch.  The sidecar creates them itself when missing (and
-- `imc-sidecar db create` does); this script is for operators who prefer to.
--   mysql kamailio < sql/mysql/imc-sidecar-history.sql
-- Times are UTC microseconds since the epoch; `id` is the paging cursor.

CREATE TABLE IF NOT EXISTS imc_sidecar_events (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    time_us BIGINT NOT NULL,
    room VARCHAR(255) NOT NULL,
    kind VARCHAR(16) NOT NULL,
    actor VARCHAR(255) NOT NULL,
    subject VARCHAR(255),
    result VARCHAR(128) NOT NULL,
    detail VARCHAR(128),
    KEY imc_sidecar_events_room_time_idx (room, time_us),
    KEY imc_sidecar_events_time_idx (time_us)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS imc_sidecar_messages (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
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
    body MEDIUMTEXT,
    KEY imc_sidecar_messages_room_time_idx (room, time_us),
    KEY imc_sidecar_messages_time_idx (time_us)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
