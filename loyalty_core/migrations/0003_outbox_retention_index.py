from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('loyalty', '0002_figures_codes_leases')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='OutboxEvent',
            index=Index(fields=['status', 'delivered_at']),
        ),
    ]
