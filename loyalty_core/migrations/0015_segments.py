"""Rule segments of members."""
from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('loyalty', '0014_birth_month_last_order')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Segment',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('chain', fields.ForeignKeyField('loyalty.Chain', source_field='chain_id', db_constraint=True, to_field='id', related_name='segments', on_delete=OnDelete.RESTRICT)),
                ('name', fields.CharField(max_length=100)),
                ('rules', fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'segments', 'app': 'loyalty', 'unique_together': (('chain', 'name'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
