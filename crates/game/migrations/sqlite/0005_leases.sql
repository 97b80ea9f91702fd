-- Which game process runs a live match (its instance id and the URL other
-- processes forward players' inputs to), and until when its lease holds.
-- A process renews its leases every third of the lease and takes over
-- live matches whose lease ran out, from their last snapshot.
ALTER TABLE matches ADD COLUMN owner TEXT;
ALTER TABLE matches ADD COLUMN owner_url TEXT;
ALTER TABLE matches ADD COLUMN lease_until TEXT;
