"""One engine for everything that leaves the system: "send this to an outside system until
it is accepted, recording each attempt".

- :mod:`support.delivery.models`: the ``Delivery`` row, its ``Attempt`` log and the
  per-target ``Circuit``.
- :mod:`support.delivery.registry`: what an integration registers, a :class:`TargetKind`
  (how to send one payload, how to classify the answer, its backoff ``Schedule``).
- :mod:`support.delivery.services`: enqueue, attempt (lease → call with no transaction
  open → record), sweep, re-drive, circuit breaking.
- :mod:`support.delivery.selectors`: reads for the admin, panels and ``/health``.

See ``docs/operations.md`` ("Outbound deliveries") for the rules in plain words.
"""
