"""Names the noise benchmarks put in customers' messages (``bench/router_noise.py``,
``bench/kb_noisy_queries.py``); no Django, so either script can import them."""

FIRST = ["Maria", "John", "Aiko", "Lars", "Fatima", "Pierre", "Chen", "Olga", "Kwame", "Sofia"]
LAST = ["Gonzalez", "Smith", "Tanaka", "Johansson", "Haddad", "Dubois", "Wei", "Novak", "Mensah"]
