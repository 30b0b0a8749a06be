-- Chunk Bloom filters, version 2 (domain/bloom.py): a hash that compaction computes for
-- all of a chunk's words at once. A chunk written from now on keeps its filter in
-- term_filter and sets every bit of its 32-byte `bloom`, so that a process of the earlier
-- version, which probes `bloom` with blake2b hashes, reads and checks such a chunk
-- rather than skipping it (a rolling upgrade answers rightly, if slower). Chunks written
-- before keep their version 1 filter in `bloom` and NULL here; searches send the hashes
-- of both versions.
ALTER TABLE log_chunks ADD COLUMN term_filter bytea;
-- Bits do not compress: stored out of line as they are, like `bloom` (0006).
ALTER TABLE log_chunks ALTER COLUMN term_filter SET STORAGE EXTERNAL;
