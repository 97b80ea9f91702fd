-- Invitations to one of the bots (`invitation_sent` with `bot`), served like the queue's
-- requests: `match_id` then holds the invitation's id, `bot_id` the bot
-- invited, and the seater accepts in its name.
ALTER TABLE wants ADD COLUMN kind TEXT NOT NULL DEFAULT 'seats';
ALTER TABLE wants ADD COLUMN bot_id UUID;
