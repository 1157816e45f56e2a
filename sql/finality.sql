-- Final/provisional flags and revision counts of freshly recounted windows
-- (`fresh`, from the rollup query) against the rows they replace
-- (`previous`, the same windows of the rollup table before the rewrite).
--
-- {unit}      the window width (minute, hour, day, month)
-- {watermark} the watermark now, µs since the epoch: a window that ends at
--             or before it is final
-- {previous}  the watermark the previous rows were written under: a window
--             that was final then and now has other values (or is new) has
--             been revised
-- {now}       the time of this rewrite, µs since the epoch
--
-- Extra columns (prev_*, revised) are dropped when the batches are fitted
-- to the table's schema.
WITH joined AS (
    SELECT f.*,
           CAST(f.window_start + INTERVAL '1 {unit}' AS BIGINT) AS window_end_us,
           p.revision AS prev_revision,
           CAST(p.revised_at AS BIGINT) AS prev_revised_at,
           (p.ad_id IS NULL
            OR f.clicks <> p.clicks
            OR f.unique_users <> p.unique_users
            OR f.conversions <> p.conversions
            OR f.clicks_by_device <> p.clicks_by_device
            OR f.clicks_by_country <> p.clicks_by_country) AS changed
    FROM fresh AS f
    LEFT JOIN previous AS p
      ON f.window_start = p.window_start AND f.ad_id = p.ad_id
),
flagged AS (
    SELECT *, (changed AND window_end_us <= {previous}) AS revised
    FROM joined
)
SELECT *,
       window_end_us <= {watermark} AS is_final,
       coalesce(prev_revision, 0) + CASE WHEN revised THEN 1 ELSE 0 END AS revision,
       CASE WHEN revised THEN {now} ELSE prev_revised_at END AS revised_at
FROM flagged
