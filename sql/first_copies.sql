-- The first stored copy of every event id in `rollup_candidates`.
--
-- `rollup_candidates` holds every stored copy (from the whole of
-- `ad_clicks`) of each event id that has a copy in the windows being
-- recomputed. Copies of one event id count once, as the first copy stored
-- says (earliest ingest_time, then event_time, ad_id, user_id), even when
-- later copies carry another time, ad or user. Computed once per run and
-- shared by every level.
SELECT * EXCLUDE (copy_no) FROM (
    SELECT *,
           row_number() OVER (
               PARTITION BY event_id
               ORDER BY ingest_time, event_time, ad_id, user_id
           ) AS copy_no
    FROM rollup_candidates
)
WHERE copy_no = 1
