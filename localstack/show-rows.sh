#!/bin/bash
# The `rows` service: every few seconds, how many rows user_logins has and the newest few, so
# `docker compose up` shows the function's work as it happens.
set -uo pipefail
last=-1
while sleep 3; do
  count="$(psql -X -At -c 'SELECT count(*) FROM user_logins' 2>/dev/null)" || continue
  [ "$count" = "$last" ] && continue
  last="$count"
  echo "user_logins now has $count rows; a few of them:"
  psql -X -q -P pager=off -c "
    SELECT left(user_id, 8) AS user_id, device_type, left(masked_ip, 10) AS masked_ip,
           left(masked_device_id, 10) AS masked_device_id, locale, app_version, create_date
    FROM user_logins_readable ORDER BY message_id LIMIT 5"
done
