-- imc tables for MySQL / MariaDB, column for column as Kamailio's kamdbctl creates them.
-- Load into the Kamailio database:  mysql kamailio < sql/mysql/imc-create.sql
-- The `version` table normally comes from Kamailio's standard-create.sql; it is created
-- here only when absent.  ENGINE=InnoDB is ours: write-through needs transactions.

CREATE TABLE IF NOT EXISTS `version` (
    `id` INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,
    `table_name` VARCHAR(32) NOT NULL,
    `table_version` INT UNSIGNED DEFAULT 0 NOT NULL,
    CONSTRAINT table_name_idx UNIQUE (`table_name`)
) ENGINE=InnoDB;
INSERT IGNORE INTO version (table_name, table_version) VALUES ('version', 1);

-- Rooms: name and domain are the room URI's user and host parts.
CREATE TABLE `imc_rooms` (
    `id` INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,
    `name` VARCHAR(64) NOT NULL,
    `domain` VARCHAR(64) NOT NULL,
    `flag` INT(11) NOT NULL,
    CONSTRAINT name_domain_idx UNIQUE (`name`, `domain`)
) ENGINE=InnoDB;
INSERT INTO version (table_name, table_version) VALUES ('imc_rooms', 1);

-- Members: room holds the whole room URI, sip:<name>@<domain>.
CREATE TABLE `imc_members` (
    `id` INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,
    `username` VARCHAR(64) NOT NULL,
    `domain` VARCHAR(64) NOT NULL,
    `room` VARCHAR(64) NOT NULL,
    `flag` INT(11) NOT NULL,
    CONSTRAINT account_room_idx UNIQUE (`username`, `domain`, `room`)
) ENGINE=InnoDB;
INSERT INTO version (table_name, table_version) VALUES ('imc_members', 1);
