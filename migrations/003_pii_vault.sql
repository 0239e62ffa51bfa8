-- Key rotation: which MASKING_KEY (by its id, MASKING_KEY_ID) masked a row. Rows written before
-- this column existed keep NULL: they were masked with the key in use before ids were introduced.
ALTER TABLE user_logins ADD COLUMN IF NOT EXISTS mask_key_id varchar(32);

-- The PII vault, used only when the function runs with RECOVERY_KEY: for each masked value, the
-- canonical value sealed with AES-SIV under that key. It is a table of its own so that it can be
-- granted apart from user_logins: analysts get user_logins, never pii_vault (see docs/privacy.md).
CREATE TABLE IF NOT EXISTS pii_vault (
    masked_value varchar(64) PRIMARY KEY,
    kind         varchar(16) NOT NULL CHECK (kind IN ('ip', 'device_id')),
    key_id       varchar(32) NOT NULL,
    ciphertext   bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
