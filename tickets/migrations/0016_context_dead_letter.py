"""Customer-context dead letters: background work of the customer context that gave up
(an interaction not recorded in a customer's history, a satisfaction survey not sent),
for a supervisor to see and re-drive (docs/customer-context.md). A new table: the previous
release's workers never touch it during the rolling deploy."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('tickets', '0015_customer_external_id'),
    ]

    operations = [
        migrations.CreateModel(
            name='ContextDeadLetter',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('interaction', 'History entry not recorded'), ('csat_survey', 'Satisfaction survey not sent')], max_length=24)),
                ('task', models.CharField(max_length=200)),
                ('args', models.JSONField(default=list)),
                ('error', models.TextField(blank=True, help_text='The last failure: type and message.')),
                ('failures', models.PositiveIntegerField(default=1)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('customer', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='tickets.customer')),
                ('ticket', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='tickets.ticket')),
            ],
            options={
                'verbose_name': 'Customer-context dead letter',
                'ordering': ['-updated_at', '-id'],
                'constraints': [models.UniqueConstraint(fields=('task', 'args'), name='context_dead_letter_unique')],
            },
        ),
    ]
