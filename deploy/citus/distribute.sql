-- Distribute the reshaped schema by chain_id on Citus: run on the coordinator after
-- deploy/citus/reshape.sql, with the worker nodes added (citus_add_node), as
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f deploy/citus/distribute.sql
-- Tables holding rows are copied to their shards as they are distributed (long on a large
-- database: see docs/scaling.md). Each call comes after the tables its foreign keys refer to.
CREATE EXTENSION IF NOT EXISTS citus;

-- Reference tables: small, read on every request, written rarely; a full copy on every node.
-- terminals and admin_keys keep their global unique keys (terminal_id, key_hash): a credential is
-- looked up before its chain is known, which a reference table answers on any node; so do
-- channels (platform, external_id): a login or a push names the app or shop, not the chain.
SELECT create_reference_table('chains');
SELECT create_reference_table('stores');
SELECT create_reference_table('admin_keys');
SELECT create_reference_table('terminals');
SELECT create_reference_table('channels');

-- Chain tables: hash-distributed by chain_id, all in members' colocation group, so that one
-- chain's rows of every table live in the same shard group and a statement scoped to one chain
-- runs on one node. (citus.shard_count, 32 by default, is fixed per colocation group: set it first
-- if you want more shards.)
SELECT create_distributed_table('members',             'chain_id', colocate_with => 'none');
SELECT create_distributed_table('accounts',            'chain_id', colocate_with => 'members');
SELECT create_distributed_table('identities',          'chain_id', colocate_with => 'members');
SELECT create_distributed_table('journal_entries',     'chain_id', colocate_with => 'members');
SELECT create_distributed_table('member_figures',      'chain_id', colocate_with => 'members');
SELECT create_distributed_table('orders',              'chain_id', colocate_with => 'members');
SELECT create_distributed_table('postings',            'chain_id', colocate_with => 'members');
SELECT create_distributed_table('points_lots',         'chain_id', colocate_with => 'members');
SELECT create_distributed_table('pending_points',      'chain_id', colocate_with => 'members');
SELECT create_distributed_table('refunds',             'chain_id', colocate_with => 'members');
SELECT create_distributed_table('topups',              'chain_id', colocate_with => 'members');
SELECT create_distributed_table('coupon_templates',    'chain_id', colocate_with => 'members');
SELECT create_distributed_table('coupons',             'chain_id', colocate_with => 'members');
SELECT create_distributed_table('member_tags',         'chain_id', colocate_with => 'members');
SELECT create_distributed_table('reviews',             'chain_id', colocate_with => 'members');
SELECT create_distributed_table('behavior_events',     'chain_id', colocate_with => 'members');
SELECT create_distributed_table('rewards',             'chain_id', colocate_with => 'members');
SELECT create_distributed_table('reward_redemptions',  'chain_id', colocate_with => 'members');
SELECT create_distributed_table('segments',            'chain_id', colocate_with => 'members');
SELECT create_distributed_table('member_days',         'chain_id', colocate_with => 'members');
SELECT create_distributed_table('idempotency_records', 'chain_id', colocate_with => 'members');
SELECT create_distributed_table('outbox_events',       'chain_id', colocate_with => 'members');
SELECT create_distributed_table('member_sessions',     'chain_id', colocate_with => 'members');
SELECT create_distributed_table('member_cards',        'chain_id', colocate_with => 'members');
SELECT create_distributed_table('message_subscriptions', 'chain_id', colocate_with => 'members');
SELECT create_distributed_table('message_sends',       'chain_id', colocate_with => 'members');
SELECT create_distributed_table('webhook_subscriptions', 'chain_id', colocate_with => 'members');
SELECT create_distributed_table('inbox_events',        'chain_id', colocate_with => 'members');

-- tortoise_migrations stays a local table of the coordinator: `loyalty migrate` runs there, and
-- Citus sends the DDL of later migrations on distributed tables to their shards.
