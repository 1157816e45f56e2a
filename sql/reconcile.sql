-- Differences between a recount of the raw events (`expected`) and a rollup
-- table (`actual`) over the same windows: one row per (window, ad) whose
-- values differ or that exists on one side only.
SELECT coalesce(e.window_start, a.window_start) AS window_start,
       coalesce(e.ad_id, a.ad_id) AS ad_id,
       e.clicks AS expected_clicks,
       a.clicks AS actual_clicks,
       e.unique_users AS expected_unique_users,
       a.unique_users AS actual_unique_users,
       e.conversions AS expected_conversions,
       a.conversions AS actual_conversions,
       ((e.clicks_by_device IS DISTINCT FROM a.clicks_by_device)
        OR (e.clicks_by_country IS DISTINCT FROM a.clicks_by_country)) AS breakdowns_differ
FROM expected AS e
FULL OUTER JOIN actual AS a
  ON e.window_start = a.window_start AND e.ad_id = a.ad_id
-- (each comparison in parentheses: IS DISTINCT FROM binds looser than OR)
WHERE (e.clicks IS DISTINCT FROM a.clicks)
   OR (e.unique_users IS DISTINCT FROM a.unique_users)
   OR (e.conversions IS DISTINCT FROM a.conversions)
   OR (e.clicks_by_device IS DISTINCT FROM a.clicks_by_device)
   OR (e.clicks_by_country IS DISTINCT FROM a.clicks_by_country)
ORDER BY window_start, ad_id
