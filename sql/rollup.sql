-- Rollup of the raw events in `rollup_source` into windows of one {unit}, per ad.
--
-- `rollup_source` holds the first stored copy of each event id (see
-- first_copies.sql) and a boolean `in_range` telling whether it lies in the
-- windows being recomputed (the compactor registers it). `{unit}` is
-- minute, hour, day or month. Every window is aligned in UTC:
-- [window_start, window_start + 1 {unit}).
--
-- clicks       = distinct event ids: copies of one event id count once, in
--                the window of the first copy stored (earliest ingest_time,
--                then event_time, ad_id, user_id), even when later copies
--                carry another time, ad or user. The breakdowns agree.
-- unique_users = distinct user ids in the window, computed from the events of
--                the window itself, never summed from finer windows.
-- users_sketch = the HLL sketch of the same user ids (hll_sketch), which
--                coarser windows and other engines can merge.
-- clicks_by_device / clicks_by_country: JSON objects {"<value>": clicks, ...},
--                keys sorted by their JSON-escaped text, a missing value
--                counted under "unknown". Built with array_agg + array_sort
--                (chr(1) marks the end of a key while sorting, so "a" sorts
--                before "ab"): an ordered string_agg per group took twice
--                as long.
WITH windowed AS (
    SELECT date_trunc('{unit}', event_time) AS window_start,
           ad_id,
           user_id,
           is_conversion,
           coalesce(device, 'unknown') AS device,
           coalesce(country, 'unknown') AS country
    FROM rollup_source
    WHERE in_range
),
totals AS (
    SELECT window_start, ad_id,
           count(*) AS clicks,
           sum(CASE WHEN is_conversion THEN 1 ELSE 0 END) AS conversions
    FROM windowed
    GROUP BY window_start, ad_id
),
-- Distinct users as a grouping of distinct rows, and the sketch apart:
-- count(DISTINCT) or a sketch next to other aggregates falls back to
-- per-group accumulators, many times slower and larger.
users AS (
    SELECT window_start, ad_id, count(*) AS unique_users
    FROM (SELECT DISTINCT window_start, ad_id, user_id FROM windowed)
    GROUP BY window_start, ad_id
),
sketches AS (
    SELECT window_start, ad_id, hll_sketch(user_id) AS users_sketch
    FROM windowed
    GROUP BY window_start, ad_id
),
device_counts AS (
    SELECT window_start, ad_id, device AS k, count(*) AS n
    FROM windowed
    GROUP BY window_start, ad_id, device
),
country_counts AS (
    SELECT window_start, ad_id, country AS k, count(*) AS n
    FROM windowed
    GROUP BY window_start, ad_id, country
),
by_device AS (
    SELECT window_start, ad_id,
           '{' || replace(array_to_string(array_sort(array_agg(
               '"' || replace(replace(k, '\', '\\'), '"', '\"') || chr(1) || CAST(n AS VARCHAR))), ','),
               chr(1), '":') || '}' AS clicks_by_device
    FROM device_counts
    GROUP BY window_start, ad_id
),
by_country AS (
    SELECT window_start, ad_id,
           '{' || replace(array_to_string(array_sort(array_agg(
               '"' || replace(replace(k, '\', '\\'), '"', '\"') || chr(1) || CAST(n AS VARCHAR))), ','),
               chr(1), '":') || '}' AS clicks_by_country
    FROM country_counts
    GROUP BY window_start, ad_id
)
SELECT t.window_start,
       t.ad_id,
       t.clicks,
       u.unique_users,
       true AS unique_users_exact,
       t.conversions,
       d.clicks_by_device,
       c.clicks_by_country,
       s.users_sketch,
       CAST(t.window_start AS DATE) AS window_date
FROM totals AS t
JOIN by_device AS d ON d.window_start = t.window_start AND d.ad_id = t.ad_id
JOIN by_country AS c ON c.window_start = t.window_start AND c.ad_id = t.ad_id
JOIN users AS u ON u.window_start = t.window_start AND u.ad_id = t.ad_id
JOIN sketches AS s ON s.window_start = t.window_start AND s.ad_id = t.ad_id
