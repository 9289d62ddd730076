"""Reviews: tier upgrades to a manual_review level and risk flags waiting for an operator; at most one
pending per member, kind and subject (a partial unique index, which the models cannot declare)."""
from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('loyalty', '0009_member_tags')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Review',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('chain', fields.ForeignKeyField('loyalty.Chain', source_field='chain_id', db_constraint=True, to_field='id', related_name='reviews', on_delete=OnDelete.RESTRICT)),
                ('member', fields.ForeignKeyField('loyalty.Member', source_field='member_id', db_constraint=True, to_field='id', related_name='reviews', on_delete=OnDelete.RESTRICT)),
                ('kind', fields.CharField(max_length=16)),
                ('subject', fields.CharField(max_length=64)),
                ('status', fields.CharField(default='pending', max_length=16)),
                ('detail', fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
                ('opened_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('decided_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('decided_by', fields.CharField(null=True, max_length=64)),
                ('note', fields.CharField(null=True, max_length=500)),
            ],
            options={'table': 'reviews', 'app': 'loyalty', 'indexes': [Index(fields=['chain_id', 'status', 'id']), Index(fields=['member_id'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.RunSQL(
            ['CREATE UNIQUE INDEX IF NOT EXISTS "uid_reviews_open" ON "reviews" ("chain_id", "member_id", "kind", "subject") '
             "WHERE \"status\" = 'pending'"],
            reverse_sql=['DROP INDEX IF EXISTS "uid_reviews_open"'],
        ),
    ]
