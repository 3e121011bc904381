-- A renewed device certificate, staged until the device first connects with it.
ALTER TABLE endpoints ADD COLUMN next_cert_fingerprint TEXT;
ALTER TABLE endpoints ADD COLUMN next_cert_not_after BIGINT;
