-- Reshape the migrated schema (`loyalty migrate`, up to 0018) so that Citus can distribute it by
-- chain_id: run it once on the coordinator, after the migrations and before distribute.sql, as
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f deploy/citus/reshape.sql
-- It needs no extension (tests/integration/test_citus_reshape_pg.py runs it on plain PostgreSQL
-- and then the app's hot paths on the result). docs/scaling.md explains every step.
--
-- Citus wants, on a distributed table, every primary key and unique key to include the
-- distribution column, and every foreign key between two distributed tables to include it on
-- both sides, at the same position. Migration 0005 put chain_id in every unique key; here:
--   1. the 25 foreign keys between chain tables are dropped;
--   2. the 24 chain tables' primary keys become (id, chain_id): id first, so that a statement
--      that still finds a row by id alone (docs/scaling.md, "Queries still to scope") keeps its
--      index; the pair is unique because id is;
--   3. the 25 foreign keys come back as (chain_id, <column>) -> (chain_id, id), ON DELETE RESTRICT
--      as before. A NULL member_id or order_id is still allowed (MATCH SIMPLE: a key with a NULL
--      column is not checked, as before).
-- The foreign keys to chains(id), stores(id) and channels(id) stay as they are: those tables, terminals and
-- admin_keys are reference tables (a full copy on every node), to which a distributed table may
-- refer by any column.
BEGIN;

-- 1. foreign keys between chain tables
ALTER TABLE accounts        DROP CONSTRAINT accounts_member_id_fkey;
ALTER TABLE identities      DROP CONSTRAINT identities_member_id_fkey;
ALTER TABLE journal_entries DROP CONSTRAINT journal_entries_member_id_fkey;
ALTER TABLE member_figures  DROP CONSTRAINT member_figures_member_id_fkey;
ALTER TABLE orders          DROP CONSTRAINT orders_member_id_fkey;
ALTER TABLE pending_points  DROP CONSTRAINT pending_points_member_id_fkey,
                            DROP CONSTRAINT pending_points_order_id_fkey;
ALTER TABLE points_lots     DROP CONSTRAINT points_lots_member_id_fkey,
                            DROP CONSTRAINT points_lots_entry_id_fkey,
                            DROP CONSTRAINT points_lots_order_id_fkey;
ALTER TABLE postings        DROP CONSTRAINT postings_entry_id_fkey,
                            DROP CONSTRAINT postings_account_id_fkey;
ALTER TABLE refunds         DROP CONSTRAINT refunds_order_id_fkey;
ALTER TABLE topups          DROP CONSTRAINT topups_member_id_fkey;
ALTER TABLE member_tags     DROP CONSTRAINT member_tags_member_id_fkey;
ALTER TABLE reviews         DROP CONSTRAINT reviews_member_id_fkey;
ALTER TABLE behavior_events DROP CONSTRAINT behavior_events_member_id_fkey;
ALTER TABLE member_days     DROP CONSTRAINT member_days_member_id_fkey;
ALTER TABLE rewards         DROP CONSTRAINT rewards_template_id_fkey;
ALTER TABLE reward_redemptions DROP CONSTRAINT reward_redemptions_member_id_fkey,
                            DROP CONSTRAINT reward_redemptions_reward_id_fkey;
ALTER TABLE coupons         DROP CONSTRAINT coupons_member_id_fkey,
                            DROP CONSTRAINT coupons_template_id_fkey;
ALTER TABLE member_sessions DROP CONSTRAINT member_sessions_member_id_fkey;
ALTER TABLE member_cards    DROP CONSTRAINT member_cards_member_id_fkey;

-- 2. primary keys with chain_id
ALTER TABLE members             DROP CONSTRAINT members_pkey,             ADD CONSTRAINT members_pkey PRIMARY KEY (id, chain_id);
ALTER TABLE identities          DROP CONSTRAINT identities_pkey,          ADD CONSTRAINT identities_pkey PRIMARY KEY (id, chain_id);
ALTER TABLE accounts            DROP CONSTRAINT accounts_pkey,            ADD CONSTRAINT accounts_pkey PRIMARY KEY (id, chain_id);
ALTER TABLE journal_entries     DROP CONSTRAINT journal_entries_pkey,     ADD CONSTRAINT journal_entries_pkey PRIMARY KEY (id, chain_id);
ALTER TABLE postings            DROP CONSTRAINT postings_pkey,            ADD CONSTRAINT postings_pkey PRIMARY KEY (id, chain_id);
ALTER TABLE points_lots         DROP CONSTRAINT points_lots_pkey,         ADD CONSTRAINT points_lots_pkey PRIMARY KEY (id, chain_id);
ALTER TABLE pending_points      DROP CONSTRAINT pending_points_pkey,      ADD CONSTRAINT pending_points_pkey PRIMARY KEY (id, chain_id);
ALTER TABLE orders              DROP CONSTRAINT orders_pkey,              ADD CONSTRAINT orders_pkey PRIMARY KEY (id, chain_id);
ALTER TABLE refunds             DROP CONSTRAINT refunds_pkey,             ADD CONSTRAINT refunds_pkey PRIMARY KEY (id, chain_id);
ALTER TABLE topups              DROP CONSTRAINT topups_pkey,              ADD CONSTRAINT topups_pkey PRIMARY KEY (id, chain_id);
ALTER TABLE coupon_templates    DROP CONSTRAINT coupon_templates_pkey,    ADD CONSTRAINT coupon_templates_pkey PRIMARY KEY (id, chain_id);
ALTER TABLE coupons             DROP CONSTRAINT coupons_pkey,             ADD CONSTRAINT coupons_pkey PRIMARY KEY (id, chain_id);
ALTER TABLE member_tags         DROP CONSTRAINT member_tags_pkey,         ADD CONSTRAINT member_tags_pkey PRIMARY KEY (id, chain_id);
ALTER TABLE reviews             DROP CONSTRAINT reviews_pkey,             ADD CONSTRAINT reviews_pkey PRIMARY KEY (id, chain_id);
ALTER TABLE behavior_events     DROP CONSTRAINT behavior_events_pkey,     ADD CONSTRAINT behavior_events_pkey PRIMARY KEY (id, chain_id);
ALTER TABLE rewards             DROP CONSTRAINT rewards_pkey,             ADD CONSTRAINT rewards_pkey PRIMARY KEY (id, chain_id);
ALTER TABLE reward_redemptions  DROP CONSTRAINT reward_redemptions_pkey,  ADD CONSTRAINT reward_redemptions_pkey PRIMARY KEY (id, chain_id);
ALTER TABLE segments            DROP CONSTRAINT segments_pkey,            ADD CONSTRAINT segments_pkey PRIMARY KEY (id, chain_id);
ALTER TABLE member_days         DROP CONSTRAINT member_days_pkey,         ADD CONSTRAINT member_days_pkey PRIMARY KEY (id, chain_id);
ALTER TABLE member_figures      DROP CONSTRAINT member_figures_pkey,      ADD CONSTRAINT member_figures_pkey PRIMARY KEY (id, chain_id);
ALTER TABLE idempotency_records DROP CONSTRAINT idempotency_records_pkey, ADD CONSTRAINT idempotency_records_pkey PRIMARY KEY (id, chain_id);
ALTER TABLE outbox_events       DROP CONSTRAINT outbox_events_pkey,       ADD CONSTRAINT outbox_events_pkey PRIMARY KEY (id, chain_id);
ALTER TABLE member_sessions     DROP CONSTRAINT member_sessions_pkey,     ADD CONSTRAINT member_sessions_pkey PRIMARY KEY (id, chain_id);
ALTER TABLE member_cards        DROP CONSTRAINT member_cards_pkey,        ADD CONSTRAINT member_cards_pkey PRIMARY KEY (id, chain_id);
ALTER TABLE message_subscriptions DROP CONSTRAINT message_subscriptions_pkey, ADD CONSTRAINT message_subscriptions_pkey PRIMARY KEY (id, chain_id);
ALTER TABLE message_sends       DROP CONSTRAINT message_sends_pkey,       ADD CONSTRAINT message_sends_pkey PRIMARY KEY (id, chain_id);
ALTER TABLE webhook_subscriptions DROP CONSTRAINT webhook_subscriptions_pkey, ADD CONSTRAINT webhook_subscriptions_pkey PRIMARY KEY (id, chain_id);
ALTER TABLE inbox_events        DROP CONSTRAINT inbox_events_pkey,        ADD CONSTRAINT inbox_events_pkey PRIMARY KEY (id, chain_id);

-- 3. foreign keys between chain tables, with chain_id
ALTER TABLE accounts        ADD CONSTRAINT accounts_member_id_fkey
  FOREIGN KEY (chain_id, member_id) REFERENCES members (chain_id, id) ON DELETE RESTRICT;
ALTER TABLE identities      ADD CONSTRAINT identities_member_id_fkey
  FOREIGN KEY (chain_id, member_id) REFERENCES members (chain_id, id) ON DELETE RESTRICT;
ALTER TABLE journal_entries ADD CONSTRAINT journal_entries_member_id_fkey
  FOREIGN KEY (chain_id, member_id) REFERENCES members (chain_id, id) ON DELETE RESTRICT;
ALTER TABLE member_figures  ADD CONSTRAINT member_figures_member_id_fkey
  FOREIGN KEY (chain_id, member_id) REFERENCES members (chain_id, id) ON DELETE RESTRICT;
ALTER TABLE orders          ADD CONSTRAINT orders_member_id_fkey
  FOREIGN KEY (chain_id, member_id) REFERENCES members (chain_id, id) ON DELETE RESTRICT;
ALTER TABLE pending_points  ADD CONSTRAINT pending_points_member_id_fkey
  FOREIGN KEY (chain_id, member_id) REFERENCES members (chain_id, id) ON DELETE RESTRICT;
ALTER TABLE pending_points  ADD CONSTRAINT pending_points_order_id_fkey
  FOREIGN KEY (chain_id, order_id) REFERENCES orders (chain_id, id) ON DELETE RESTRICT;
ALTER TABLE points_lots     ADD CONSTRAINT points_lots_member_id_fkey
  FOREIGN KEY (chain_id, member_id) REFERENCES members (chain_id, id) ON DELETE RESTRICT;
ALTER TABLE points_lots     ADD CONSTRAINT points_lots_entry_id_fkey
  FOREIGN KEY (chain_id, entry_id) REFERENCES journal_entries (chain_id, id) ON DELETE RESTRICT;
ALTER TABLE points_lots     ADD CONSTRAINT points_lots_order_id_fkey
  FOREIGN KEY (chain_id, order_id) REFERENCES orders (chain_id, id) ON DELETE RESTRICT;
ALTER TABLE postings        ADD CONSTRAINT postings_entry_id_fkey
  FOREIGN KEY (chain_id, entry_id) REFERENCES journal_entries (chain_id, id) ON DELETE RESTRICT;
ALTER TABLE postings        ADD CONSTRAINT postings_account_id_fkey
  FOREIGN KEY (chain_id, account_id) REFERENCES accounts (chain_id, id) ON DELETE RESTRICT;
ALTER TABLE refunds         ADD CONSTRAINT refunds_order_id_fkey
  FOREIGN KEY (chain_id, order_id) REFERENCES orders (chain_id, id) ON DELETE RESTRICT;
ALTER TABLE topups          ADD CONSTRAINT topups_member_id_fkey
  FOREIGN KEY (chain_id, member_id) REFERENCES members (chain_id, id) ON DELETE RESTRICT;
ALTER TABLE coupons         ADD CONSTRAINT coupons_member_id_fkey
  FOREIGN KEY (chain_id, member_id) REFERENCES members (chain_id, id) ON DELETE RESTRICT;
ALTER TABLE coupons         ADD CONSTRAINT coupons_template_id_fkey
  FOREIGN KEY (chain_id, template_id) REFERENCES coupon_templates (chain_id, id) ON DELETE RESTRICT;
ALTER TABLE member_tags     ADD CONSTRAINT member_tags_member_id_fkey
  FOREIGN KEY (chain_id, member_id) REFERENCES members (chain_id, id) ON DELETE RESTRICT;
ALTER TABLE reviews         ADD CONSTRAINT reviews_member_id_fkey
  FOREIGN KEY (chain_id, member_id) REFERENCES members (chain_id, id) ON DELETE RESTRICT;
ALTER TABLE behavior_events ADD CONSTRAINT behavior_events_member_id_fkey
  FOREIGN KEY (chain_id, member_id) REFERENCES members (chain_id, id) ON DELETE RESTRICT;
ALTER TABLE member_days     ADD CONSTRAINT member_days_member_id_fkey
  FOREIGN KEY (chain_id, member_id) REFERENCES members (chain_id, id) ON DELETE RESTRICT;
ALTER TABLE rewards         ADD CONSTRAINT rewards_template_id_fkey
  FOREIGN KEY (chain_id, template_id) REFERENCES coupon_templates (chain_id, id) ON DELETE RESTRICT;
ALTER TABLE reward_redemptions ADD CONSTRAINT reward_redemptions_member_id_fkey
  FOREIGN KEY (chain_id, member_id) REFERENCES members (chain_id, id) ON DELETE RESTRICT;
ALTER TABLE reward_redemptions ADD CONSTRAINT reward_redemptions_reward_id_fkey
  FOREIGN KEY (chain_id, reward_id) REFERENCES rewards (chain_id, id) ON DELETE RESTRICT;
ALTER TABLE member_sessions ADD CONSTRAINT member_sessions_member_id_fkey
  FOREIGN KEY (chain_id, member_id) REFERENCES members (chain_id, id) ON DELETE RESTRICT;
ALTER TABLE member_cards    ADD CONSTRAINT member_cards_member_id_fkey
  FOREIGN KEY (chain_id, member_id) REFERENCES members (chain_id, id) ON DELETE RESTRICT;

COMMIT;
