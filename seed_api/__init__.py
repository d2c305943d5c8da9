"""Each seed's documented HTTP contract, mounted on the existing views and services.

The five seeds in the product's history documented endpoints that clients may have been
written against (``docs/api.md#seed-contracts`` lists them, where each is served and how it
differs). This package only maps those paths, methods and shapes onto the product's own
views, serializers and services: nothing here creates tickets, reads analytics or routes
anything by itself. ``SEED_CONTRACTS_ENABLED`` (on by default) switches the seed-only
paths off (404; ``PUT /api/tickets/{id}`` then answers 405 as before).

An interface layer like ``*/api``: it imports the feature apps; nothing imports it except
the URL wiring (``support/urls.py``).
"""
