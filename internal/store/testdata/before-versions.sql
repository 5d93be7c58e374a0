-- The schema and rows of a database made by glasscast before versioned
-- schemas (commit 51d0989, user_version 0), kept to test its upgrade.
CREATE TABLE IF NOT EXISTS apps (
	package_name TEXT PRIMARY KEY,
	name         TEXT NOT NULL DEFAULT '',
	public_url   TEXT NOT NULL,
	key_hash     BLOB NOT NULL,
	permissions  TEXT NOT NULL DEFAULT '',
	created_at   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
	id         TEXT PRIMARY KEY,
	created_at INTEGER NOT NULL,
	last_seen  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS playback_generations (
	stream_id  TEXT PRIMARY KEY,
	generation INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS streams (
	id         TEXT PRIMARY KEY,
	stream_key TEXT NOT NULL,
	name       TEXT NOT NULL DEFAULT '',
	record     INTEGER NOT NULL DEFAULT 0,
	public     INTEGER NOT NULL DEFAULT 0,
	state      TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	ended_at   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS stream_outputs (
	id         TEXT PRIMARY KEY,
	stream_id  TEXT NOT NULL REFERENCES streams (id) ON DELETE CASCADE,
	url        TEXT NOT NULL,
	name       TEXT NOT NULL DEFAULT '',
	profile    TEXT NOT NULL DEFAULT '',
	owner      TEXT NOT NULL,
	created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS running_apps (
	user_id      TEXT NOT NULL,
	package_name TEXT NOT NULL,
	started_at   INTEGER NOT NULL,
	PRIMARY KEY (user_id, package_name)
);
INSERT INTO apps VALUES ('com.example.kept', 'Kept', 'http://127.0.0.1:3000', X'00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff', 'CAMERA', 1780000000000);
INSERT INTO users VALUES ('wearer@example.com', 1780000000000, 1780000500000);
INSERT INTO playback_generations VALUES ('s1', 3);
INSERT INTO streams VALUES ('s1', 'key-of-s1', 'porch', 1, 0, 'live', 1780000000000, 0);
INSERT INTO stream_outputs VALUES ('o1', 's1', 'rtmp://127.0.0.1:1935/live/out', 'mirror', '', 'admin', 1780000001000);
INSERT INTO running_apps VALUES ('wearer@example.com', 'com.example.kept', 1780000002000);
