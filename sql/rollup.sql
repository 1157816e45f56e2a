-- Rollup of the raw events in `rollup_source` into windows of one {unit}, per ad.
--
-- `rollup_source` holds every stored copy (from the whole of `ad_clicks`) of
-- each event id that has a copy in the windows being recomputed, and a
-- boolean `in_range` telling whether the copy lies in those windows (the
-- compactor registers it). `{unit}` is minute, hour, day or month. Every
-- window is aligned in UTC: [window_start, window_start + 1 {unit}).
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
--                keys sorted, a missing value counted under "unknown".
WITH numbered AS (
    SELECT event_id, ad_id, user_id, event_time, device, country, is_conversion, in_range,
           row_number() OVER (
               PARTITION BY event_id
               ORDER BY ingest_time, event_time, ad_id, user_id
           ) AS copy_no
    FROM rollup_source
),
windowed AS (
    SELECT date_trunc('{unit}', event_time) AS window_start,
           ad_id,
           user_id,
           is_conversion,
           coalesce(device, 'unknown') AS device,
           coalesce(country, 'unknown') AS country
    FROM numbered
    WHERE copy_no = 1 AND in_range
),
totals AS (
    SELECT window_start, ad_id,
           count(*) AS clicks,
           count(DISTINCT user_id) AS unique_users,
           hll_sketch(user_id) AS users_sketch,
           sum(CASE WHEN is_conversion THEN 1 ELSE 0 END) AS conversions
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
           '{' || string_agg(
               '"' || replace(replace(k, '\', '\\'), '"', '\"') || '":' || CAST(n AS VARCHAR),
               ',' ORDER BY k) || '}' AS clicks_by_device
    FROM device_counts
    GROUP BY window_start, ad_id
),
by_country AS (
    SELECT window_start, ad_id,
           '{' || string_agg(
               '"' || replace(replace(k, '\', '\\'), '"', '\"') || '":' || CAST(n AS VARCHAR),
               ',' ORDER BY k) || '}' AS clicks_by_country
    FROM country_counts
    GROUP BY window_start, ad_id
)
SELECT t.window_start,
       t.ad_id,
       t.clicks,
       t.unique_users,
       true AS unique_users_exact,
       t.conversions,
       d.clicks_by_device,
       c.clicks_by_country,
       t.users_sketch,
       CAST(t.window_start AS DATE) AS window_date
FROM totals AS t
JOIN by_device AS d ON d.window_start = t.window_start AND d.ad_id = t.ad_id
JOIN by_country AS c ON c.window_start = t.window_start AND c.ad_id = t.ad_id
