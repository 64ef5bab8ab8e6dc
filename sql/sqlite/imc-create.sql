-- imc tables for SQLite, column for column as Kamailio's kamdbctl creates them.
-- Load into the Kamailio database:  sqlite3 /path/to/kamailio.db < sql/sqlite/imc-create.sql
-- The version table normally comes from Kamailio's standard-create.sql; it is created
-- here only when absent.  INTEGER PRIMARY KEY makes id the auto-assigned rowid.

CREATE TABLE IF NOT EXISTS version (
    id INTEGER PRIMARY KEY NOT NULL,
    table_name VARCHAR(32) NOT NULL,
    table_version INTEGER DEFAULT 0 NOT NULL,
    CONSTRAINT version_table_name_idx UNIQUE (table_name)
);
INSERT OR IGNORE INTO version (table_name, table_version) VALUES ('version', 1);

-- Rooms: name and domain are the room URI's user and host parts.
CREATE TABLE imc_rooms (
    id INTEGER PRIMARY KEY NOT NULL,
    name VARCHAR(64) NOT NULL,
    domain VARCHAR(64) NOT NULL,
    flag INTEGER NOT NULL,
    CONSTRAINT imc_rooms_name_domain_idx UNIQUE (name, domain)
);
INSERT INTO version (table_name, table_version) VALUES ('imc_rooms', 1);

-- Members: room holds the whole room URI, sip:<name>@<domain>.
CREATE TABLE imc_members (
    id INTEGER PRIMARY KEY NOT NULL,
    username VARCHAR(64) NOT NULL,
    domain VARCHAR(64) NOT NULL,
    room VARCHAR(64) NOT NULL,
    flag INTEGER NOT NULL,
    CONSTRAINT imc_members_account_room_idx UNIQUE (username, domain, room)
);
INSERT INTO version (table_name, table_version) VALUES ('imc_members', 1);
