"""Points lots found through indexes of the lots that still hold points.

The expiry job's scan and a redemption's draw-down only ever want lots with ``remaining > 0``;
after a year or two most lots are spent or expired, so an index over every lot grows with the
chain's history while these two stay the size of what is still open:

- ``(chain_id, expires_at, id) WHERE remaining > 0``: the expiry scan walks it in that order
  from the oldest open lot and stops at the first not yet due, so a run that finds nothing
  due reads nothing (the scan by id walked the primary key past every lot ever written).
- ``(chain_id, member_id, expires_at, id) WHERE remaining > 0``: a member's open lots in
  draw order, so a draw-down reads only the lots it needs.

They replace the indexes on (member_id, remaining) and (chain_id, expires_at). Both databases
take partial indexes; the models do not declare them (Tortoise's ``Index`` has no ``WHERE``).
"""
from tortoise import migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('loyalty', '0005_chain_in_unique_keys')]

    initial = False

    operations = [
        ops.RunSQL(
            [
                'CREATE INDEX IF NOT EXISTS "idx_points_lots_open_expiry" '
                'ON "points_lots" ("chain_id", "expires_at", "id") WHERE "remaining" > 0',
                'CREATE INDEX IF NOT EXISTS "idx_points_lots_open_member" '
                'ON "points_lots" ("chain_id", "member_id", "expires_at", "id") WHERE "remaining" > 0',
            ],
            reverse_sql=[
                'DROP INDEX IF EXISTS "idx_points_lots_open_expiry"',
                'DROP INDEX IF EXISTS "idx_points_lots_open_member"',
            ],
        ),
        ops.RemoveIndex(model_name='PointsLot', fields=['member_id', 'remaining']),
        ops.RemoveIndex(model_name='PointsLot', fields=['chain_id', 'expires_at']),
    ]
