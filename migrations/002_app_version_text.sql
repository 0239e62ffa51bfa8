-- app_version is stored as major*1_000_000 + minor*1_000 + patch ("2.3.0" -> 2003000) so that it
-- fits the original integer column and still sorts by version. These turn it back into text.
CREATE OR REPLACE FUNCTION app_version_text(encoded integer) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT format('%s.%s.%s', encoded / 1000000, (encoded / 1000) % 1000, encoded % 1000)
$$;

-- What analysts usually want to read: the table with app_version decoded.
CREATE OR REPLACE VIEW user_logins_readable AS
SELECT user_id,
       device_type,
       masked_ip,
       masked_device_id,
       locale,
       app_version_text(app_version) AS app_version,
       create_date,
       message_id
FROM user_logins;
