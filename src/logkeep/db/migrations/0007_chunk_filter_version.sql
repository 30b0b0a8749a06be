-- Chunk Bloom filters get a hash that compaction computes for all of a chunk's words at
-- once (domain/bloom.py, version 2). Chunks written before keep version 1 (blake2b):
-- searches send the hashes of both, and each chunk is probed with its own. The default
-- only fills in the existing rows: every insert names its version.
ALTER TABLE log_chunks ADD COLUMN filter_version smallint NOT NULL DEFAULT 1;
ALTER TABLE log_chunks ALTER COLUMN filter_version DROP DEFAULT;
