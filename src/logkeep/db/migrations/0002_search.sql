-- Search (issue 4): full-text over log messages.
--
-- GIN on to_tsvector('simple', ...) rather than pg_trgm: the pgserver wheel that fresh
-- machines run ships no pg_trgm, and `q` asks for words, which a tsvector answers from
-- the index. Substrings (`contains`) are an ILIKE over the rows the time window and the
-- other filters leave, never a whole-table scan.
--
-- 'simple' lower-cases and keeps every word (no stemming, no stop words): log lines are
-- identifiers, codes and paths more than prose. The expression must be written exactly
-- so in queries (db/search.py FULLTEXT_DOCUMENT) or the planner cannot use the index.
-- left(message, 131072): a tsvector holds under 1 MB of lexemes and its INSERT fails
-- beyond that; a 256 Ki-character message of distinct 4-byte words would reach it, and
-- one such message would fail its whole COPY batch. 128 Ki characters are at most 512 KB.
--
-- Measured on a 2-core machine (bench/index_costs.py: 200k rows, 5,000-row COPY batches;
-- bench/fulltext.py: 1M rows in the last 24 h, a page of the newest 100):
-- - Ingest: this index alone leaves 0.21x of the bare table's rows/s; the whole schema
--   goes from 140k rows/s (0001) to 42k rows/s (0.30x). Half of that is computing
--   to_tsvector (about 8 us a row on one core), the rest is the GIN insert. A 32 MB
--   pending list gains little (0.26x); fastupdate off is far worse (0.05x).
-- - Size: 98 bytes a row after VACUUM.
-- - Search, newest 100 over 24 h, with / without this index: a rare word 0.6 / 4,216 ms;
--   a word in 2% of rows 66 / 4,247 ms; a word in half of the rows 272 / 4,348 ms.
-- - Pending list 4 MB (the default, pinned here), not the 32 MB of the metadata index:
--   right after a 100k-row COPY a 32 MB list made the planner give up on the index
--   (a scan of 435 ms instead of 2.6 ms for a rare word); searches read the whole
--   pending list until it is flushed.
CREATE INDEX log_entries_message_fulltext ON log_entries
    USING gin (to_tsvector('simple'::regconfig, left(message, 131072)))
    WITH (gin_pending_list_limit = 4096);
