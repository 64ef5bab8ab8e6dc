"""The change feed: how several sidecars on one database keep their memory of the rooms
equal to the tables.

Every committed change bumps its room's version (a row of `imc_sidecar_room_versions`,
checked in the same transaction, so two sidecars changing one room cannot both win) and
appends a row to `imc_sidecar_changes`.  Every sidecar reads that table and re-reads a
room whose version went past the one it knows.  The rules are pure: `versions.py`
(which versions a write claims, which feed rows call for a re-read) and `cursor.py`
(reading an auto-increment feed without missing rows); the SQL is `store/feed.py` and
the loop `feed/follower.py`.
"""
