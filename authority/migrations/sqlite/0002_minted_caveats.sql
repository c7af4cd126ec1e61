-- How many caveats each token was minted with (DESIGN §3.7): Verify hands a
-- verifier chain signatures only from that position on. NULL for tokens
-- minted before it was recorded: they get the presented signature only.
ALTER TABLE tokens ADD COLUMN minted_caveats INTEGER;
