"""Customers carry an ``external_id``: the caller's own customer id (seed 004's
``customer_id``, ``"CUST-42"``), by which ``POST /tickets`` finds or creates the customer
and the external customer database is asked (``routing.customer_db``).

The column has a database default (``""``: none), so the previous release's workers keep
creating customers during the deploy. Unique when set, through a partial unique index that
is also the lookup's index (every existing row is ``""``, so it starts empty).
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tickets", "0014_interaction_scope"),
    ]

    operations = [
        migrations.AddField(
            model_name="customer",
            name="external_id",
            field=models.CharField(
                blank=True,
                db_default="",
                default="",
                help_text=(
                    "The customer's id in the caller's own systems (seed 004's customer_id, "
                    "e.g. CUST-42): what POST /tickets finds the customer by, and what the "
                    "external customer database is asked with. Unique when set; "
                    "case-sensitive."
                ),
                max_length=255,
            ),
        ),
        migrations.AddConstraint(
            model_name="customer",
            constraint=models.UniqueConstraint(
                condition=models.Q(("external_id", ""), _negated=True),
                fields=("external_id",),
                name="customer_external_id_unique",
            ),
        ),
    ]
