"""What the tests share beyond the fixtures of tests/conftest.py; no test module imports another.

api.py        the backend's JSON API checked against openapi.yaml, its clock and service
browser.py    fixtures: a headless chromium per module, a fresh browser per test
console.py    fixtures: console clients signed in by role, a backend on a simulated AMI
databases.py  fixtures (a pytest plugin): SQLite or a throwaway PostgreSQL, a fresh database each
pskc.py       PSKC key containers: RFC 6030's figures and vendors' shapes
servers.py    the counting backend client, the FastAGI server with AMI, a refused port
stored.py     what the backend stored: bundles, a call's log and events
truckers.py   truckers with accounts, tokens and cargo; the clock the tests move

The throwaway PostgreSQL server, chromium and the console's seeding are harness/'s (the
benchmarks and scripts use them too).
"""
