-- What a delivery's Sieve scripts send out (redirects, vacation replies; each
-- a protobuf SieveOutbound), kept with its idempotency key so a redelivered
-- job gets them again and delivery-worker publishes what it may have missed.
ALTER TABLE deliveries ADD COLUMN sieve_outbound BYTEA[];
